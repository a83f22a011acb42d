//! Management end to end: real `weft mgmtd` processes on their own loopback addresses
//! (127.A.B.1, .2, .3 with the default port), each running its own brick process, driven
//! through the `weft` CLI and the REST API, with real mounts by volume name.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::pool::*;
use common::*;
use serde_json::Value;

#[test]
fn a_pool_of_three_runs_a_volume_from_create_to_delete() {
    let d = scratch("mgmt-life");
    let nodes = pool(1, 3, d.path());
    let (h1, h2, h3) = (
        nodes[0].host.clone(),
        nodes[1].host.clone(),
        nodes[2].host.clone(),
    );
    let t = &nodes[0];
    // Every node sees the same pool, all connected.
    for n in &nodes {
        let p = json(&n.host, t, &["pool", "list"]);
        let mut hosts: Vec<&str> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["host"].as_str().unwrap())
            .collect();
        hosts.sort();
        assert_eq!(hosts, vec![h1.as_str(), h2.as_str(), h3.as_str()], "{p}");
        assert!(
            p.as_array()
                .unwrap()
                .iter()
                .all(|x| x["state"] == "Connected"),
            "{p}"
        );
    }
    // The token is the pool's: every node took the first one's, mode 0600.
    for n in &nodes {
        assert_eq!(n.token(), nodes[0].token());
        let m = std::fs::metadata(n.workdir.join("token")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            0o600
        );
    }
    let brick = d.path().join("bricks/v1");
    let spec = format!("{h3}:{}", brick.display());
    // Created through node 2, for a brick on node 3.
    let out = ok(&h2, t, &["volume", "create", "v1", &spec]);
    assert!(out.contains("volume create: v1: success"), "{out}");
    for n in &nodes {
        let i = info(&n.host, t, "v1");
        assert_eq!(i["status"], "Created");
        assert_eq!(i["type"], "Distribute");
        assert_eq!(i["brick_count"], 1);
        assert_eq!(i["bricks"][0]["name"], spec.as_str());
        assert_eq!(i["transport"], "tcp");
    }
    wait_until("the brick marker", 10, || {
        getxattr(&brick, "trusted.weft.volume-id")
            .is_ok_and(|v| v == info(&h1, t, "v1")["id"].as_str().unwrap().as_bytes())
    });
    let out = ok(&h1, t, &["volume", "start", "v1"]);
    assert!(out.contains("volume start: v1: success"), "{out}");
    let st = json(&h1, t, &["volume", "status", "v1"]);
    assert_eq!(st["status"], "Started");
    assert_eq!(st["bricks"][0]["online"], true, "{st}");
    assert_eq!(st["bricks"][0]["port"], 24101);
    assert_eq!(st["bricks"][0]["pid"], nodes[2].brickd_pid().unwrap());
    for n in &nodes {
        assert_eq!(info(&n.host, t, "v1")["status"], "Started");
    }
    // Mounted by name from node 1 (which holds no brick), written, seen on the brick.
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_args(
        &[format!("{h1}:/v1").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    std::fs::write(mnt.join("hello"), b"through the pool").unwrap();
    assert_eq!(
        std::fs::read(brick.join("hello")).unwrap(),
        b"through the pool"
    );
    let st = json(&h2, t, &["volume", "status", "v1"]);
    assert_eq!(st["bricks"][0]["clients"], 1, "{st}");
    // Deleting a started volume is refused; stop, then delete.
    let e = fails(&h1, t, &["volume", "delete", "v1"]);
    assert!(e.contains("stop it before deleting"), "{e}");
    drop(m);
    ok(&h2, t, &["volume", "stop", "v1"]);
    let st = json(&h3, t, &["volume", "status", "v1"]);
    assert_eq!(st["status"], "Stopped");
    assert_eq!(st["bricks"][0]["online"], false, "{st}");
    ok(&h3, t, &["volume", "delete", "v1"]);
    for n in &nodes {
        assert_eq!(json(&n.host, t, &["volume", "info"]), Value::Array(vec![]));
        let e = fails(&n.host, t, &["volume", "info", "v1"]);
        assert!(e.contains("volume v1 does not exist"), "{e}");
    }
    // The data stays; the marker goes, so the directory can be used again (with force,
    // as it is not empty).
    wait_until("the marker to go", 10, || {
        getxattr(&brick, "trusted.weft.volume-id").is_err()
    });
    assert!(brick.join("hello").exists());
    let e = fails(&h1, t, &["volume", "create", "v2", &spec]);
    assert!(e.contains("not empty"), "{e}");
    ok(&h1, t, &["volume", "create", "v2", &spec, "force"]);
}

#[test]
fn state_survives_restarts_and_a_node_that_was_down_catches_up() {
    let d = scratch("mgmt-restart");
    let mut nodes = pool(2, 3, d.path());
    let (h1, h3) = (nodes[0].host.clone(), nodes[2].host.clone());
    let brick = d.path().join("b1");
    ok(
        &h1,
        &nodes[0],
        &[
            "volume",
            "create",
            "v",
            &format!("{h1}:{}", brick.display()),
        ],
    );
    // Node 3 goes away; the other two still make changes.
    nodes[2].sigkill();
    ok(
        &h1,
        &nodes[0],
        &[
            "volume",
            "set",
            "v",
            "performance.write-behind-window-size",
            "2MB",
        ],
    );
    let p = json(&h1, &nodes[0], &["peer", "status"]);
    assert!(
        p.as_array()
            .unwrap()
            .iter()
            .any(|x| x["host"] == h3.as_str() && x["state"] == "Disconnected"),
        "{p}"
    );
    // A create that needs the down node fails cleanly and leaves nothing.
    let e = fails(
        &h1,
        &nodes[0],
        &[
            "volume",
            "create",
            "w",
            &format!("{h3}:{}", d.path().join("bw").display()),
        ],
    );
    assert!(
        e.contains("down or does not answer") && e.contains("the create needs it"),
        "{e}"
    );
    assert!(fails(&h1, &nodes[0], &["volume", "info", "w"]).contains("does not exist"));
    // Back: it has the change made while it was down.
    nodes[2].spawn();
    wait_until("node 3 to catch up", 20, || {
        let (good, out, _) = cli(&h3, &nodes[0], &["volume", "info", "v", "--json"]);
        good && out.contains("\"performance.write-behind-window-size\": \"2MB\"")
    });
    // Every node restarted keeps the state.
    for n in nodes.iter_mut() {
        n.restart();
    }
    wait_until("the pool to answer again", 20, || {
        cli(
            &h1,
            &nodes[0],
            &["volume", "set", "v", "network.ping-timeout", "7"],
        )
        .0
    });
    for n in &nodes {
        let i = info(&n.host, &nodes[0], "v");
        assert_eq!(
            i["options"]["performance.write-behind-window-size"], "2MB",
            "{i}"
        );
    }
}

#[test]
fn sigkill_during_create_or_set_leaves_all_or_nothing() {
    let d = scratch("mgmt-kill");
    let mut nodes = pool(3, 3, d.path());
    let hosts: Vec<String> = nodes.iter().map(|n| n.host.clone()).collect();
    let token = nodes[0].workdir.join("token");
    for round in 0..6u64 {
        let victim = (round % 3) as usize;
        let vol = format!("k{round}");
        let brick = d.path().join(format!("kb{round}"));
        let create = weft()
            .args([
                "volume",
                "create",
                &vol,
                &format!("{}:{}", hosts[(victim + 1) % 3], brick.display()),
            ])
            .args(["--remote-host", &hosts[victim]])
            .env("WEFT_TOKEN_FILE", &token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let set = weft()
            .args([
                "volume",
                "set",
                "k0",
                "network.ping-timeout",
                &format!("{}", 10 + round),
            ])
            .args(["--remote-host", &hosts[victim]])
            .env("WEFT_TOKEN_FILE", &token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(round * 37 % 150));
        nodes[victim].sigkill();
        for mut c in [create, set] {
            let _ = c.wait();
        }
        nodes[victim].spawn();
        // All three agree: the volume is on every node with one id, or on none; the option
        // has one value everywhere.
        wait_until("the pool to agree", 30, || {
            let views: Vec<String> = hosts
                .iter()
                .map(|h| {
                    let (good, out, _) = cli(h, &nodes[0], &["volume", "info", "--json"]);
                    if good {
                        out
                    } else {
                        format!("error {h}")
                    }
                })
                .collect();
            views
                .iter()
                .all(|v| v == &views[0] && !v.starts_with("error"))
        });
        let all: Value =
            serde_json::from_str(&ok(&hosts[0], &nodes[0], &["volume", "info", "--json"])).unwrap();
        for v in all.as_array().unwrap() {
            assert!(v["id"].as_str().is_some_and(|s| s.len() == 36), "{v}");
        }
    }
}

#[test]
fn an_option_change_reaches_a_mounted_client_while_it_writes() {
    let d = scratch("mgmt-live");
    let b = block(4);
    let node = Node::start(&format!("{b}.1"), &d.path().join("node1"), &[]);
    let h = node.host.clone();
    ok(
        &h,
        &node,
        &[
            "volume",
            "create",
            "live",
            &format!("{h}:{}", d.path().join("brick").display()),
        ],
    );
    ok(&h, &node, &["volume", "start", "live"]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_args(
        &[format!("{h}:/live").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let path = mnt.join("log");
    let writer = {
        let stop = stop.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(format!("record {n:08}\n").as_bytes()).unwrap();
                n += 1;
            }
            f.sync_all().unwrap();
            n
        })
    };
    let dump = || weft_output(&["statedump", mnt.to_str().unwrap()]);
    let text = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    std::thread::sleep(Duration::from_millis(300));
    ok(
        &h,
        &node,
        &["volume", "set", "live", "performance.write-behind", "off"],
    );
    wait_until("write-behind off in the mount", 20, || {
        text(dump()).contains("enable=off")
    });
    std::thread::sleep(Duration::from_millis(300));
    ok(
        &h,
        &node,
        &["volume", "reset", "live", "performance.write-behind"],
    );
    wait_until("write-behind on again", 20, || {
        text(dump()).contains("enable=on")
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = writer.join().unwrap();
    assert!(n > 100, "the writer barely wrote ({n})");
    let data = std::fs::read_to_string(&path).unwrap();
    let expect: String = (0..n).map(|i| format!("record {i:08}\n")).collect();
    assert!(
        data == expect,
        "the file lost or mixed writes: {} bytes, expected {}",
        data.len(),
        expect.len()
    );
    drop(m);
}

#[test]
fn a_killed_brick_process_is_started_again_and_clients_reconnect() {
    let d = scratch("mgmt-brickd");
    let b = block(5);
    let node = Node::start(&format!("{b}.1"), &d.path().join("node1"), &[]);
    let h = node.host.clone();
    ok(
        &h,
        &node,
        &[
            "volume",
            "create",
            "bv",
            &format!("{h}:{}", d.path().join("brick").display()),
        ],
    );
    ok(&h, &node, &["volume", "start", "bv"]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/bv").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    std::fs::write(mnt.join("before"), b"1").unwrap();
    let old = node.brickd_pid().unwrap();
    // SAFETY: kill(2) of the brick process.
    unsafe { libc::kill(old, libc::SIGKILL) };
    wait_until("the brick online again under a new pid", 30, || {
        let st = json(&h, &node, &["volume", "status", "bv"]);
        st["bricks"][0]["online"] == true
            && st["bricks"][0]["pid"] != old
            && st["brick_processes"][0]["restarts"] == 1
    });
    let (_, text, _) = cli(&h, &node, &["volume", "status", "bv"]);
    assert!(text.contains("restarted 1 time"), "{text}");
    wait_until("the mount to reconnect", 30, || {
        std::fs::write(mnt.join("after"), b"2").is_ok()
    });
    assert_eq!(std::fs::read(mnt.join("before")).unwrap(), b"1");
}

#[test]
fn a_task_killed_with_its_mgmtd_resumes_from_its_checkpoint() {
    let d = scratch("mgmt-task");
    let b = block(6);
    let mut node = Node::start(&format!("{b}.1"), &d.path().join("node1"), &[]);
    let h = node.host.clone();
    let r = json(
        &h,
        &node,
        &[
            "volume",
            "task",
            "start",
            "count",
            "target=120",
            "throttle",
            "30",
        ],
    );
    let id = r["id"].as_str().unwrap().to_string();
    wait_until("some progress", 20, || {
        json(&h, &node, &["volume", "task", "status", &id])["items_done"]
            .as_u64()
            .unwrap()
            >= 40
    });
    node.sigkill();
    // What the store holds is what a restart resumes from.
    node.spawn();
    let r = json(&h, &node, &["volume", "task", "status", &id]);
    let resumed_at = r["items_done"].as_u64().unwrap();
    assert!(resumed_at >= 25, "the task restarted from (near) zero: {r}");
    assert_eq!(r["resumed"], 1, "{r}");
    json(&h, &node, &["volume", "task", "pause", &id]);
    std::thread::sleep(Duration::from_millis(300));
    let a = json(&h, &node, &["volume", "task", "status", &id])["items_done"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let r = json(&h, &node, &["volume", "task", "status", &id]);
    assert_eq!(r["state"], "paused");
    assert!(
        r["items_done"].as_u64().unwrap() <= a + 1,
        "paused but working: {r}"
    );
    ok(&h, &node, &["volume", "task", "throttle", &id, "0"]);
    json(&h, &node, &["volume", "task", "resume", &id]);
    // --watch draws progress until the end.
    let out = ok(&h, &node, &["volume", "task", "status", &id, "--watch"]);
    assert!(
        out.contains("completed") && out.contains("120/120"),
        "{out}"
    );
    let r = json(&h, &node, &["volume", "task", "status", &id]);
    assert_eq!(r["items_done"], 120);
    assert_eq!(r["checkpoint"]["next"], 120);
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let d = scratch("mgmt-bad");
    let b = block(7);
    let n1 = Node::start(&format!("{b}.1"), &d.path().join("node1"), &[]);
    let mut n2 = Node::start(&format!("{b}.2"), &d.path().join("node2"), &[]);
    let n3 = Node::start(&format!("{b}.3"), &d.path().join("node3"), &[]);
    let old = Node::start(
        &format!("{b}.4"),
        &d.path().join("node4"),
        &["--max-op-version", "0"],
    );
    let (h1, h2) = (n1.host.clone(), n2.host.clone());
    ok(&h1, &n1, &["peer", "probe", &h2]);
    ok(&h1, &n1, &["peer", "probe", &n3.host]);
    // A node that cannot run at the pool's op-version is refused, saying which.
    let e = fails(&h1, &n1, &["peer", "probe", &old.host]);
    assert!(
        e.contains("op-version") && e.contains("0 to 0") || e.contains("supports op-versions"),
        "{e}"
    );
    let e = fails(&h1, &n1, &["peer", "probe", &format!("{b}.9")]);
    assert!(e.contains("does not answer"), "{e}");
    let e = fails(&h1, &n1, &["peer", "detach", "no.such.host"]);
    assert!(e.contains("not part of the pool"), "{e}");
    let before = json(&h1, &n1, &["volume", "info"]);
    let bp = |s: &str| format!("{h1}:{}", d.path().join(s).display());
    let bq = |s: &str| format!("{h2}:{}", d.path().join(s).display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["replica".into(), "2".into(), bp("r1"), bq("r2"), bp("r3")],
            "not a multiple of the replica count 2",
        ),
        (
            vec!["replica".into(), "2".into(), bp("r1"), bp("r2")],
            "several bricks of one replica set are on one node",
        ),
        (
            vec![
                "replica".into(),
                "2".into(),
                "arbiter".into(),
                "1".into(),
                bp("r1"),
                bq("r2"),
                "force".into(),
            ],
            "arbiter 1 needs replica 3",
        ),
        (
            vec![
                "disperse".into(),
                "3".into(),
                bp("r1"),
                bq("r2"),
                bp("r3"),
                "force".into(),
            ],
            "cluster/disperse",
        ),
        (
            vec!["relative/path".into()],
            "neither an option nor a HOST:/PATH",
        ),
        (vec![format!("{h1}:relative")], "neither an option"),
        (vec![format!("{b}.8:/x")], "not in the pool"),
        (vec![format!("{h1}:/a/../b")], "normal form"),
    ];
    for (args, want) in cases {
        let mut a = vec!["volume", "create", "bad"];
        a.extend(args.iter().map(String::as_str));
        let e = fails(&h1, &n1, &a);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // Brick directory rules, checked by the node that holds it.
    std::fs::create_dir_all(d.path().join("full")).unwrap();
    std::fs::write(d.path().join("full/x"), b"x").unwrap();
    let e = fails(&h1, &n1, &["volume", "create", "bad", &bq("full")]);
    assert!(e.contains("not empty") && e.contains("force"), "{e}");
    ok(&h1, &n1, &["volume", "create", "good", &bq("good")]);
    wait_until("the marker", 10, || {
        getxattr(&d.path().join("good"), "trusted.weft.volume-id").is_ok()
    });
    let e = fails(&h1, &n1, &["volume", "create", "bad", &bq("good/inner")]);
    assert!(e.contains("overlaps brick") || e.contains("inside"), "{e}");
    let e = fails(&h1, &n1, &["volume", "create", "bad", &bp("good")]);
    assert!(e.contains("already part of a volume"), "{e}");
    let e = fails(&h1, &n1, &["volume", "create", "-bad", &bq("x")]);
    assert!(e.contains("not a valid volume name"), "{e}");
    // Options.
    let e = fails(&h1, &n1, &["volume", "set", "good", "no.such.key", "1"]);
    assert!(e.contains("option no.such.key does not exist"), "{e}");
    let e = fails(
        &h1,
        &n1,
        &["volume", "set", "good", "performance.write-behind", "maybe"],
    );
    assert!(e.contains("not a boolean"), "{e}");
    let e = fails(
        &h1,
        &n1,
        &["volume", "set", "good", "network.ping-timeout", "soon"],
    );
    assert!(e.contains("network.ping-timeout"), "{e}");
    let e = fails(
        &h1,
        &n1,
        &["volume", "set", "nosuch", "network.ping-timeout", "5"],
    );
    assert!(e.contains("volume nosuch does not exist"), "{e}");
    let e = fails(&h1, &n1, &["volume", "set", "good", "client.ssl", "on"]);
    assert!(e.contains("cannot be set"), "{e}");
    let e = fails(&h1, &n1, &["volume", "start", "nosuch"]);
    assert!(e.contains("volume nosuch does not exist"), "{e}");
    let e = fails(&h1, &n1, &["volume", "add-brick", "nosuch", &bp("more")]);
    assert!(e.contains("volume nosuch does not exist"), "{e}");
    // Nothing changed but the one good volume.
    let after = json(&h1, &n1, &["volume", "info"]);
    assert_eq!(before, Value::Array(vec![]));
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert!(
        after[0]["options"].as_object().unwrap().is_empty(),
        "{after}"
    );
    // A peer that is down when the change needs it (the other two keep the quorum).
    n2.sigkill();
    let e = fails(&h1, &n1, &["volume", "start", "good"]);
    assert!(e.contains("is down"), "{e}");
    assert_eq!(info(&h1, &n1, "good")["status"], "Created");
    n2.spawn();

    // REST: no token, a wrong token, malformed JSON, an unknown volume, an unknown path.
    let raw = |req: String| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((h1.as_str(), weft_core::MGMT_PORT)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let post = |path: &str, token: Option<&str>, body: &str| {
        raw(format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
            token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default(),
            body.len()
        ))
    };
    let body = r#"{"name":"viarest","bricks":["x:/y"]}"#;
    let r = post("/v1/volumes", None, body);
    assert!(
        r.starts_with("HTTP/1.1 401") && r.contains("needs the pool token"),
        "{r}"
    );
    let r = post("/v1/volumes", Some("wrong"), body);
    assert!(
        r.starts_with("HTTP/1.1 401") && r.contains("wrong token"),
        "{r}"
    );
    let tok = n1.token();
    let r = post("/v1/volumes", Some(&tok), "{not json");
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("not valid JSON"),
        "{r}"
    );
    let r = post("/v1/volumes", Some(&tok), r#"{"name": 5}"#);
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("does not fit"),
        "{r}"
    );
    let r = post("/v1/volumes/nosuch/start", Some(&tok), "{}");
    assert!(
        r.starts_with("HTTP/1.1 404") && r.contains("volume nosuch does not exist"),
        "{r}"
    );
    let r = raw("GET /v1/volumes/nosuch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    assert!(
        r.starts_with("HTTP/1.1 404") && r.contains("\"error\""),
        "{r}"
    );
    let r = raw("GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = raw("GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    let doc: Value = serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        doc["paths"]["/v1/volumes/{name}/start"]["post"].is_object(),
        "{doc}"
    );
    assert_eq!(
        json(&h1, &n1, &["volume", "info"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Unmounts a mount made through mount(8) (detached, not our child) on drop, and removes
/// the mount helper this test installed.
struct ExternalMount {
    mnt: PathBuf,
    installed_helper: bool,
}

impl Drop for ExternalMount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mnt)
                .status();
        }
        if self.installed_helper {
            let _ = std::fs::remove_file("/sbin/mount.weft");
        }
    }
}

#[test]
fn mount_t_weft_and_an_fstab_line_mount_by_name() {
    let d = scratch("mgmt-mount-t");
    let b = block(9);
    let node = Node::start(&format!("{b}.1"), &d.path().join("node1"), &[]);
    let h = node.host.clone();
    ok(
        &h,
        &node,
        &[
            "volume",
            "create",
            "mt",
            &format!("{h}:{}", d.path().join("brick").display()),
        ],
    );
    ok(&h, &node, &["volume", "start", "mt"]);
    // The helper as scripts/install.sh installs it (unless one is installed already).
    let helper = Path::new("/sbin/mount.weft");
    let installed_helper = !helper.exists();
    if installed_helper {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mount.weft");
        std::fs::copy(&src, helper).unwrap();
    }
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut guard = ExternalMount {
        mnt: mnt.clone(),
        installed_helper,
    };
    let mount = |args: &[&str]| {
        let o = std::process::Command::new("mount")
            .args(args)
            .env("WEFT", env!("CARGO_BIN_EXE_weft"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let log = d.path().join("m.log");
    mount(&[
        "-t",
        "weft",
        &format!("{h}:/mt"),
        mnt.to_str().unwrap(),
        "-o",
        &format!("log-file={}", log.display()),
    ]);
    let fm = String::from_utf8(
        std::process::Command::new("findmnt")
            .args(["-n", "-o", "SOURCE,FSTYPE"])
            .arg(&mnt)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        fm.split_whitespace().collect::<Vec<_>>(),
        vec![format!("{h}:/mt").as_str(), "fuse.weft"],
        "{fm}"
    );
    std::fs::write(mnt.join("f"), b"via mount -t").unwrap();
    assert!(std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    // That mount process has ended before the path is mounted again.
    wait_until("the first mount process to end", 10, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&format!("unmounted {}", mnt.display()))
    });
    // The same through an fstab line (mount -T FILE DIR reads it as /etc/fstab).
    let fstab = d.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# test\n{h}:/mt  {}  weft  defaults,_netdev,log-file={}  0 0\n",
            mnt.display(),
            log.display()
        ),
    )
    .unwrap();
    mount(&["-T", fstab.to_str().unwrap(), mnt.to_str().unwrap()]);
    assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"via mount -t");
    // The kernel may still hold the file just read for a moment on a loaded machine
    // ("target is busy"): a plain umount must succeed once it lets go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .unwrap()
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "umount {} still fails after 10 s",
            mnt.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    guard.mnt = mnt;
}

#[test]
fn peers_detach_and_read_commands_answer() {
    let d = scratch("mgmt-detach");
    let mut nodes = pool(10, 3, d.path());
    let (h1, h2, h3) = (
        nodes[0].host.clone(),
        nodes[1].host.clone(),
        nodes[2].host.clone(),
    );
    let (first, others) = nodes.split_at_mut(1);
    let t = &first[0];
    ok(
        &h1,
        t,
        &[
            "volume",
            "create",
            "rd",
            &format!("{h2}:{}", d.path().join("b").display()),
        ],
    );
    // A node with bricks stays; a node cannot detach itself.
    let e = fails(&h1, t, &["peer", "detach", &h2]);
    assert!(e.contains("holds bricks of volume(s) rd"), "{e}");
    let e = fails(&h1, t, &["peer", "detach", &h1]);
    assert!(e.contains("cannot detach itself"), "{e}");
    // Detached: gone from every node's list, and a pool of one again that can be probed back.
    let out = ok(&h1, t, &["peer", "detach", &h3]);
    assert!(out.contains("peer detach: success"), "{out}");
    for h in [&h1, &h2] {
        let p = json(h, t, &["pool", "list"]);
        assert_eq!(p.as_array().unwrap().len(), 2, "{p}");
    }
    wait_until("the detached node to be on its own", 20, || {
        let (good, out, _) = cli(&h3, t, &["pool", "list", "--json"]);
        good && serde_json::from_str::<Value>(&out)
            .is_ok_and(|p| p.as_array().map(|a| a.len()) == Some(1))
    });
    ok(&h1, t, &["peer", "probe", &h3]);
    // A down peer needs force.
    others[1].sigkill();
    let e = fails(&h1, t, &["peer", "detach", &h3]);
    assert!(e.contains("not connected") && e.contains("force"), "{e}");
    ok(&h1, t, &["peer", "detach", &h3, "force"]);
    assert_eq!(json(&h2, t, &["pool", "list"]).as_array().unwrap().len(), 2);
    // Read commands.
    let help = json(&h1, t, &["volume", "set", "help"]);
    let keys: Vec<&str> = help
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    for k in [
        "performance.write-behind",
        "network.ping-timeout",
        "auth.allow",
        "python.module",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    ok(
        &h1,
        t,
        &["volume", "set", "rd", "network.ping-timeout", "9"],
    );
    let got = json(&h2, t, &["volume", "get", "rd", "network.ping-timeout"]);
    assert_eq!(got[0]["value"], "9");
    assert_eq!(got[0]["set"], true);
    let all = json(&h2, t, &["volume", "get", "rd", "all"]);
    let wb = all
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "performance.write-behind")
        .unwrap();
    assert_eq!(wb["value"], "on");
    assert_eq!(wb["set"], false);
    let spec = ok(&h2, t, &["system", "getspec", "rd"]);
    assert!(
        spec.contains("option ping-timeout 9")
            && spec.contains("option remote-subvolume rd-brick0"),
        "{spec}"
    );
    // python.module puts a features/python translator into the client graph.
    ok(
        &h1,
        t,
        &[
            "volume",
            "set",
            "rd",
            "python.module",
            "hide",
            "python.config",
            "prefix=secret",
        ],
    );
    let spec = ok(&h1, t, &["system", "getspec", "rd"]);
    assert!(
        spec.contains("type features/python") && spec.contains("option module hide"),
        "{spec}"
    );
    ok(&h1, t, &["volume", "reset", "rd"]);
    let spec = ok(&h1, t, &["system", "getspec", "rd"]);
    assert!(
        !spec.contains("features/python") && !spec.contains("ping-timeout"),
        "{spec}"
    );
    assert_eq!(ok(&h1, t, &["volume", "list"]).trim(), "rd");
    // Statedump of the started volume's brick, through the node that does not hold it.
    ok(&h1, t, &["volume", "start", "rd"]);
    let dump = json(&h1, t, &["volume", "statedump", "rd"]);
    let text = dump[format!("{h2}:{}", d.path().join("b").display())]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("[rd-brick0]") && text.contains("[rd-brick0-locks]"),
        "{text}"
    );
    // Profile: the brick's io-stats, turned off and on through its options.
    let brick = format!("{h2}:{}", d.path().join("b").display());
    let info = json(&h1, t, &["volume", "profile", "rd", "info"]);
    assert!(
        info[&brick]
            .as_str()
            .unwrap()
            .contains("count-fop-hits = on"),
        "{info}"
    );
    ok(&h1, t, &["volume", "profile", "rd", "stop"]);
    wait_until("profiling off on the brick", 20, || {
        let (good, out, _) = cli(&h1, t, &["volume", "profile", "rd", "info", "--json"]);
        good && out.contains("count-fop-hits = off") && out.contains("latency-measurement = off")
    });
    ok(&h1, t, &["volume", "profile", "rd", "start"]);
    wait_until("profiling on again", 20, || {
        let (good, out, _) = cli(&h1, t, &["volume", "profile", "rd", "info", "--json"]);
        good && out.contains("count-fop-hits = on")
    });
}

#[test]
fn a_brick_option_change_applies_in_place_and_keeps_open_files() {
    let d = scratch("mgmt-inplace");
    let b = block(8);
    let node = Node::start(&format!("{b}.1"), &d.path().join("node1"), &[]);
    let h = node.host.clone();
    ok(
        &h,
        &node,
        &[
            "volume",
            "create",
            "inpl",
            &format!("{h}:{}", d.path().join("brick").display()),
        ],
    );
    ok(&h, &node, &["volume", "start", "inpl"]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_args(
        &[format!("{h}:/inpl").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    use std::io::Write;
    let mut f = std::fs::File::create(mnt.join("held")).unwrap();
    f.write_all(b"before\n").unwrap();
    f.sync_all().unwrap();
    let status = || json(&h, &node, &["volume", "status", "inpl"]);
    wait_until("the brick online with its client", 20, || {
        let st = status();
        st["bricks"][0]["online"] == true && st["bricks"][0]["clients"] == 1
    });
    let pid = status()["bricks"][0]["pid"].clone();
    ok(
        &h,
        &node,
        &["volume", "set", "inpl", "server.root-squash", "on"],
    );
    // The option reaches the brick (root's new files are the anonymous user's) ...
    wait_until("root-squash on the brick", 20, || {
        let _ = std::fs::remove_file(mnt.join("probe"));
        std::fs::write(mnt.join("probe"), b"x").is_ok()
            && std::os::unix::fs::MetadataExt::uid(
                &std::fs::metadata(d.path().join("brick/probe")).unwrap(),
            ) == 65534
    });
    // ... without a reattach: the open file is still writable, the brick process and its
    // one client are the same.
    f.write_all(b"after\n").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(
        std::fs::read_to_string(d.path().join("brick/held")).unwrap(),
        "before\nafter\n"
    );
    let st = status();
    assert_eq!(st["bricks"][0]["online"], true, "{st}");
    assert_eq!(st["bricks"][0]["pid"], pid, "{st}");
    assert_eq!(st["bricks"][0]["clients"], 1, "{st}");
    let log = std::fs::read_to_string(d.path().join("mount.log")).unwrap_or_default();
    assert!(
        !log.contains("disconnected"),
        "the mount was disconnected:\n{log}"
    );
    drop(m);
}

#[test]
fn a_distributed_volume_spans_the_pool() {
    let d = scratch("mgmt-dist");
    let nodes = pool(11, 3, d.path());
    let t = &nodes[0];
    let bricks: Vec<PathBuf> = (1..=3).map(|i| d.path().join(format!("db{i}"))).collect();
    let specs: Vec<String> = nodes
        .iter()
        .zip(&bricks)
        .map(|(n, b)| format!("{}:{}", n.host, b.display()))
        .collect();
    let mut args = vec!["volume", "create", "dv"];
    args.extend(specs.iter().map(String::as_str));
    ok(&nodes[1].host, t, &args);
    let i = info(&nodes[2].host, t, "dv");
    assert_eq!(i["type"], "Distribute");
    assert_eq!(i["brick_count"], 3);
    ok(&nodes[0].host, t, &["volume", "start", "dv"]);
    let st = json(&nodes[2].host, t, &["volume", "status", "dv"]);
    assert!(
        st["bricks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["online"] == true),
        "{st}"
    );
    let spec = ok(&nodes[0].host, t, &["system", "getspec", "dv"]);
    assert!(spec.contains("type cluster/distribute"), "{spec}");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_args(
        &[format!("{}:/dv", nodes[0].host).as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    std::fs::create_dir(mnt.join("dir")).unwrap();
    for i in 0..300 {
        std::fs::write(mnt.join(format!("dir/f{i}")), format!("file {i}")).unwrap();
    }
    for i in 0..300 {
        assert_eq!(
            std::fs::read_to_string(mnt.join(format!("dir/f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
    assert_eq!(std::fs::read_dir(mnt.join("dir")).unwrap().count(), 300);
    // Every brick holds a fair share, and every file is on exactly one brick.
    let mut total = 0;
    for b in &bricks {
        let n = std::fs::read_dir(b.join("dir"))
            .unwrap()
            .filter(|e| {
                e.as_ref().unwrap().metadata().unwrap().permissions().mode() & 0o7777 != 0o1000
            })
            .count();
        assert!(
            (30..=180).contains(&n),
            "brick {} holds {n} of 300",
            b.display()
        );
        total += n;
    }
    assert_eq!(total, 300);
    drop(m);
    ok(&nodes[0].host, t, &["volume", "stop", "dv"]);
    ok(&nodes[0].host, t, &["volume", "delete", "dv"]);
}
