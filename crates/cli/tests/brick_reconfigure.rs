//! Brick options changed in place (`weft brickd reconfigure`), with a real `weft brickd`
//! and real FUSE mounts in their own processes:
//! - `server.root-squash on` applied while a mount holds an open file and an fcntl lock:
//!   the mount's connection stays up (the open file still reads and writes, the lock
//!   still excludes another mount's F_SETLK), and a file root creates afterwards is the
//!   anonymous user's on the brick;
//! - an `auth.allow` that no longer admits 127.0.0.1 disconnects the connected mounts
//!   (their locks released at once: they cannot come back) and new mounts are refused
//!   with the server's reason;
//! - a reconfigure that cannot apply (a brick not served here, another graph shape, bad
//!   options) fails with a clear error and changes nothing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A python3 process on a mount that runs one command per line and answers one line:
/// `open KEY PATH`, `lock KEY` (an exclusive fcntl lock, non-blocking), `write KEY TEXT`
/// (at offset 0), `read KEY`. Answers `ok`, `ok TEXT` for reads, or the errno's name.
const AGENT: &str = r#"
import errno, fcntl, os, sys
fds = {}
for line in sys.stdin:
    a = line.split()
    try:
        c = a[0]
        if c == 'open':
            fds[a[1]] = os.open(a[2], os.O_RDWR | os.O_CREAT, 0o644)
            out = 'ok'
        elif c == 'lock':
            fcntl.lockf(fds[a[1]], fcntl.LOCK_EX | fcntl.LOCK_NB)
            out = 'ok'
        elif c == 'write':
            os.pwrite(fds[a[1]], a[2].encode(), 0)
            out = 'ok'
        elif c == 'read':
            out = 'ok ' + os.pread(fds[a[1]], 4096, 0).decode()
        else:
            out = 'unknown command'
    except OSError as e:
        out = errno.errorcode.get(e.errno, str(e.errno))
    print(out, flush=True)
"#;

/// A running [`AGENT`]; killed on drop.
struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    fn start() -> Agent {
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(AGENT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Agent {
            child,
            stdin,
            stdout,
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        out.trim().to_string()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a non-blocking exclusive fcntl lock of all of `file` gets in a new process: `ok`
/// (then let go at once) or the errno's name.
fn try_lock(file: &Path) -> String {
    python_ok(
        "import errno, fcntl, sys\nf = open(sys.argv[1], 'r+')\ntry:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('ok')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n",
        &[file.as_os_str()],
    )
}

/// (uid, gid) of `p` on the brick's own filesystem.
fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

/// Writes `text` as a server volfile in `dir` and runs `weft brickd reconfigure` with it.
fn reconfigure(bd: &Brickd, dir: &Path, name: &str, text: &str) -> Output {
    let vf = dir.join(name);
    std::fs::write(&vf, text).unwrap();
    bd.ctl("reconfigure", &[vf.to_str().unwrap()])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn status(bd: &Brickd) -> String {
    String::from_utf8_lossy(&bd.ctl("status", &[]).stdout).into_owned()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `weft mount --foreground` of brick `brick` on `port` at a new mountpoint and
/// returns how it ended (a refused mount exits at once).
fn try_mount(dir: &Path, name: &str, brick: &str, port: u16) -> Output {
    let mnt = dir.join(format!("mnt-{name}"));
    std::fs::create_dir_all(&mnt).unwrap();
    let cv = dir.join(format!("{name}.vol"));
    std::fs::write(&cv, client_volfile(brick, port, &[])).unwrap();
    let out = weft()
        .args(["mount", "--foreground", "--volfile"])
        .arg(&cv)
        .arg(&mnt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!is_mounted(&mnt), "{name}: the refused mount is mounted");
    out
}

#[test]
fn brick_options_change_in_place_and_clients_keep_their_files_and_locks() {
    let v = NetVolume::new("reconf", 2, false);
    let (dir, bd) = (v.dir.path().to_path_buf(), &v.brickd);
    let logs = || {
        format!(
            "--- brickd ---\n{}\n--- mount 0 ---\n{}\n--- mount 1 ---\n{}",
            bd.log_text(),
            v.mounts[0].1.log_text(),
            v.mounts[1].1.log_text()
        )
    };
    // Mount 0 holds a file open and locked.
    let held = v.mnt(0).join("held");
    let mut agent = Agent::start();
    assert_eq!(agent.cmd(&format!("open h {}", held.display())), "ok");
    assert_eq!(agent.cmd("write h before"), "ok");
    assert_eq!(agent.cmd("lock h"), "ok");
    assert_eq!(try_lock(&v.mnt(1).join("held")), "EAGAIN", "{}", logs());
    // Without squashing, root's files are root's.
    std::fs::write(v.mnt(0).join("by-root-before"), b"x").unwrap();
    assert_eq!(owner(&v.brick.join("by-root-before")), (0, 0));
    assert!(status(bd).contains("nv clients=2"), "{}", status(bd));
    let closed_before = bd.log_text().matches("connection closed").count();

    let out = reconfigure(
        bd,
        &dir,
        "squash.vol",
        &brick_graph("nv", &v.brick, &[("server.root-squash", "on")]),
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reconfigured nv\n");
    assert!(
        log_shows(|| bd.log_text(), "server.root-squash=on"),
        "brickd does not log what changed:\n{}",
        logs()
    );
    // The connection stayed up: the same fd works, the lock is still held.
    assert_eq!(agent.cmd("write h after!"), "ok", "{}", logs());
    assert_eq!(agent.cmd("read h"), "ok after!", "{}", logs());
    assert_eq!(try_lock(&v.mnt(1).join("held")), "EAGAIN", "{}", logs());
    assert!(status(bd).contains("nv clients=2"), "{}", status(bd));
    assert_eq!(
        bd.log_text().matches("connection closed").count(),
        closed_before,
        "a connection was closed by the reconfigure:\n{}",
        logs()
    );
    for (_, m) in &v.mounts {
        let t = m.log_text();
        assert!(
            !t.contains("new session") && !t.contains("resumed"),
            "the mount reconnected:\n{t}"
        );
    }
    // Squashing applies from now on: root's new file is the anonymous user's.
    std::fs::write(v.mnt(0).join("by-root-after"), b"x").unwrap();
    assert_eq!(owner(&v.brick.join("by-root-after")), (65534, 65534));
    assert_eq!(owner(&v.brick.join("by-root-before")), (0, 0));

    // An auth.allow that no longer admits the mounts: they are disconnected, and what
    // they held is released at once (they cannot come back for it).
    let out = reconfigure(
        bd,
        &dir,
        "allow.vol",
        &brick_graph(
            "nv",
            &v.brick,
            &[("server.root-squash", "on"), ("auth.allow", "10.9.9.9")],
        ),
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), logs());
    wait_until("the refused clients to be disconnected", 10, || {
        status(bd).trim() == "nv clients=0"
    });
    assert!(
        log_shows(
            || bd.log_text(),
            "the brick's new access policy refuses it: brick \"nv\" refuses"
        ),
        "{}",
        logs()
    );
    assert!(bd.log_text().contains("is not in auth.allow"), "{}", logs());
    let w = agent.cmd("write h refused");
    assert!(w == "ENOTCONN" || w == "EIO", "write after refusal: {w}");
    // A new mount is refused with the server's reason.
    let out = try_mount(&dir, "late", "nv", bd.port);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("address 127.0.0.1 is not in auth.allow"),
        "{err}"
    );
    // Letting 127.0.0.1 in again: the mounts come back. The holder is gone meanwhile, so
    // its mount takes no lock again, and the brick kept nothing: the lock is free.
    drop(agent);
    let out = reconfigure(
        bd,
        &dir,
        "open.vol",
        &brick_graph("nv", &v.brick, &[("auth.allow", "127.0.0.1")]),
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), logs());
    wait_until("the mounts to reconnect", 30, || {
        status(bd).contains("nv clients=2")
    });
    wait_until("the lock to be free", 30, || {
        try_lock(&v.mnt(1).join("held")) == "ok"
    });
}

#[test]
fn a_reconfigure_that_cannot_apply_changes_nothing() {
    let v = NetVolume::new("reconf-no", 1, false);
    let (dir, bd) = (v.dir.path().to_path_buf(), &v.brickd);
    let other = dir.join("other-brick");
    std::fs::create_dir(&other).unwrap();
    let squashed = brick_graph("nv", &v.brick, &[("server.root-squash", "on")]);
    let root_file = |n: &str| {
        std::fs::write(v.mnt(0).join(n), b"x").unwrap();
        owner(&v.brick.join(n))
    };

    // A brick this process does not serve, beside one it does: nothing is applied.
    let text = format!("{squashed}{}", brick_graph("other", &other, &[]));
    let out = reconfigure(bd, &dir, "two.vol", &text);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("brick \"other\" is not served by this process"),
        "{}",
        stderr(&out)
    );
    assert_eq!(root_file("after-unserved"), (0, 0));

    // Another shape (a translator more): refused, saying so.
    let shaped = format!(
        "volume nv-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
         volume nv-trace\n    type debug/trace\n    subvolumes nv-posix\nend-volume\n\n\
         volume nv\n    type features/locks\n    subvolumes nv-trace\nend-volume\n\n\
         volume nv-server\n    type protocol/server\n    option server.root-squash on\n    subvolumes nv\nend-volume\n",
        v.brick.display()
    );
    let out = reconfigure(bd, &dir, "shape.vol", &shaped);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("brick \"nv\": the graph changed shape") && err.contains("detach and attach"),
        "{err}"
    );
    assert_eq!(root_file("after-shape"), (0, 0));

    // Bad options: a bad value, certificate names without TLS, TLS on a server without a
    // certificate.
    for (opts, want) in [
        (vec![("server.anonuid", "x")], "server.anonuid"),
        (
            vec![("auth.ssl-allow", "alice")],
            "needs transport.socket.ssl-enabled on",
        ),
        (
            vec![("transport.socket.ssl-enabled", "on")],
            "started without --tls-cert",
        ),
        (vec![("auth.allow", "not-an-address")], "auth.allow"),
    ] {
        let mut opts = opts;
        opts.push(("server.root-squash", "on"));
        let out = reconfigure(bd, &dir, "bad.vol", &brick_graph("nv", &v.brick, &opts));
        assert!(!out.status.success(), "{opts:?} was accepted");
        assert!(stderr(&out).contains(want), "{opts:?}: {}", stderr(&out));
    }
    assert_eq!(root_file("after-bad"), (0, 0));

    // Through all of it the mount kept its one connection.
    assert_eq!(status(bd).trim(), "nv clients=1");
    assert!(
        !bd.log_text().contains("connection closed"),
        "{}",
        bd.log_text()
    );
    // And a good one still applies.
    let out = reconfigure(bd, &dir, "good.vol", &squashed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(root_file("after-good"), (65534, 65534));
}
