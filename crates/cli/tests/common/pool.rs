//! A pool of real `weft mgmtd` processes for tests, each on its own loopback address
//! (127.A.B.1, .2, ... with the default port) running its own brick process, and the
//! `weft` CLI driven against them. Nodes are killed with their brick process on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{weft, weft_dying_with};

/// A unique loopback block for this test process: 127.A.B.x.
pub fn block(test: u8) -> String {
    format!(
        "127.{}.{}",
        200 + test as u32 % 50,
        std::process::id() % 250 + 1
    )
}

/// One mgmtd; killed with its brick process on drop.
pub struct Node {
    /// Its address (the default port).
    pub host: String,
    /// Its workdir.
    pub workdir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    extra: Vec<String>,
}

impl Node {
    pub fn start(host: &str, workdir: &Path, extra: &[&str]) -> Node {
        let mut n = Node {
            host: host.into(),
            workdir: workdir.to_path_buf(),
            child: None,
            log: workdir.with_extension("log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        n.spawn();
        n
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = weft_dying_with(libc::SIGKILL)
            .args(["mgmtd", "--listen", &self.host, "--workdir"])
            .arg(&self.workdir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn mgmtd");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(
            line.contains("listening"),
            "mgmtd {} did not start: {line}\n{}",
            self.host,
            self.log_text()
        );
        self.child = Some(child);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.sigkill();
        self.spawn();
    }

    pub fn brickd_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.workdir.join("run/brickd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.workdir.join("token"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.sigkill();
        if let Some(pid) = self.brickd_pid() {
            // SAFETY: kill(2) of the brick process this node started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Runs `weft ARGS` against `host`'s mgmtd with its token; (success, stdout, stderr).
pub fn cli(host: &str, token_of: &Node, args: &[&str]) -> (bool, String, String) {
    let o = weft()
        .args(args)
        .args(["--remote-host", host])
        .env("WEFT_TOKEN_FILE", token_of.workdir.join("token"))
        .stdin(Stdio::null())
        .output()
        .expect("run weft");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn ok(host: &str, t: &Node, args: &[&str]) -> String {
    let (good, out, err) = cli(host, t, args);
    assert!(good, "weft {args:?} at {host} failed:\n{out}{err}");
    out
}

pub fn fails(host: &str, t: &Node, args: &[&str]) -> String {
    let (good, out, err) = cli(host, t, args);
    assert!(!good, "weft {args:?} at {host} should fail:\n{out}");
    err
}

pub fn json(host: &str, t: &Node, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(host, t, &a)).expect("json")
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three (or `n`) mgmtd on `block.1..n`, probed into one pool from the first.
pub fn pool(test: u8, n: usize, dir: &Path) -> Vec<Node> {
    let b = block(test);
    let nodes: Vec<Node> = (1..=n)
        .map(|i| Node::start(&format!("{b}.{i}"), &dir.join(format!("node{i}")), &[]))
        .collect();
    for node in &nodes[1..] {
        // No port: the default one.
        let out = ok(&nodes[0].host, &nodes[0], &["peer", "probe", &node.host]);
        assert!(out.contains("success"), "{out}");
    }
    nodes
}

pub fn info(host: &str, t: &Node, vol: &str) -> Value {
    let v = json(host, t, &["volume", "info", vol]);
    v[0].clone()
}
