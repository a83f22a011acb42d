//! Volumes served by a real `weft brickd` over loopback TCP to real FUSE mounts in
//! separate `weft mount` processes.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A scratch dir holding one brick per name, a server volfile for them, and a client
/// volfile plus mountpoint per brick (written once the port is known).
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        Setup { dir: scratch(tag) }
    }
    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
    /// Writes a server volfile `file` with one brick graph per name.
    fn server_volfile(
        &self,
        file: &str,
        bricks: &[&str],
        opts: &[(&str, &str)],
    ) -> std::path::PathBuf {
        let mut text = String::new();
        for b in bricks {
            let dir = self.path(&format!("bricks/{b}"));
            std::fs::create_dir_all(&dir).unwrap();
            text.push_str(&brick_graph(b, &dir, opts));
        }
        let p = self.path(file);
        std::fs::write(&p, text).unwrap();
        p
    }
    /// Mounts brick `brick` of the server on `port` at `mnt-<tag>`.
    fn mount(&self, brick: &str, port: u16, tag: &str, opts: &[(&str, &str)]) -> MountGuard {
        let vf = self.path(&format!("{tag}.vol"));
        std::fs::write(&vf, client_volfile(brick, port, opts)).unwrap();
        let mnt = self.path(&format!("mnt-{tag}"));
        std::fs::create_dir_all(&mnt).unwrap();
        mount_volfile(&vf, &mnt, &self.path(&format!("{tag}.log")), &[])
    }
}

fn python(script: &str, args: &[&str]) -> Command {
    let mut c = Command::new("/usr/bin/python3");
    c.arg("-c").arg(script).args(args);
    c
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn two_mounts_share_files_and_posix_locks() {
    let s = Setup::new("net-share");
    let vf = s.server_volfile("server.vol", &["share"], &[]);
    let bd = Brickd::start(s.dir.path(), &vf, &[]);
    let m1 = s.mount("share", bd.port, "one", &[]);
    let m2 = s.mount("share", bd.port, "two", &[]);

    // Written and closed on one client, read whole on the other.
    let data = pseudo_random(3 << 20, 7);
    std::fs::write(m1.mnt.join("blob"), &data).unwrap();
    assert_eq!(std::fs::read(m2.mnt.join("blob")).unwrap(), data);
    std::fs::create_dir(m2.mnt.join("d")).unwrap();
    std::fs::write(m2.mnt.join("d/x"), b"x").unwrap();
    assert_eq!(std::fs::read(m1.mnt.join("d/x")).unwrap(), b"x");

    // An fcntl lock held through one mount blocks a process on the other.
    let mut holder = hold_lock(&m1.mnt.join("blob"));
    let try_lock = r#"
import fcntl, sys, errno
f = open(sys.argv[1], 'r+')
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print('acquired')
except OSError as e:
    print(errno.errorcode[e.errno])
"#;
    let out = python(try_lock, &[m2.mnt.join("blob").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EAGAIN");
    // A blocking request waits until the holder lets go, then gets the lock.
    let wait_lock = r#"
import fcntl, sys, time
f = open(sys.argv[1], 'r+')
t = time.time()
fcntl.lockf(f, fcntl.LOCK_EX)
print('%.2f' % (time.time() - t))
"#;
    let waiter = python(wait_lock, &[m2.mnt.join("blob").to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    drop(holder.stdin.take()); // the holder reads EOF and exits, closing its file
    holder.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    let waited: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        waited >= 0.5,
        "the waiter got the lock after {waited}s, before it was released"
    );
    drop((m1, m2));
}

#[test]
fn killed_brick_fails_writes_fast_and_the_mount_recovers() {
    let s = Setup::new("net-kill");
    let vf = s.server_volfile("server.vol", &["k"], &[]);
    let mut bd = Brickd::start(s.dir.path(), &vf, &[]);
    let m = s.mount("k", bd.port, "k", &[("ping-timeout", "3")]);
    std::fs::write(m.mnt.join("before"), b"kept").unwrap();

    let writer = r#"
import os, sys, time, errno
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
buf = b'w' * 65536
print('writing', flush=True)
while True:
    try:
        os.write(fd, buf)
    except OSError as e:
        print(errno.errorcode[e.errno], time.time(), flush=True)
        break
"#;
    let mut w = python(writer, &[m.mnt.join("stream").to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(w.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    bd.kill9();
    // The writer must see an error within the ping timeout, not hang.
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = out.read_line(&mut l);
        let _ = tx.send(l);
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    let _ = w.kill();
    let _ = w.wait();
    let got = got.expect("the writer hung after the brick was killed");
    let mut parts = got.split_whitespace();
    let err = parts.next().unwrap();
    assert!(matches!(err, "ENOTCONN" | "EIO"), "writer saw {got:?}");
    let failed_at: f64 = parts.next().unwrap().parse().unwrap();
    assert!(
        failed_at - killed_at < 4.0,
        "error after {:.1}s",
        failed_at - killed_at
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // While it is down, FOPs fail rather than hang.
    assert!(std::fs::read(m.mnt.join("before")).is_err());

    bd.restart();
    let start = Instant::now();
    loop {
        match std::fs::read(m.mnt.join("before")) {
            Ok(d) => {
                assert_eq!(d, b"kept");
                break;
            }
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(15),
                "mount did not recover: {e}\n{}",
                m.log_text()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(m.mnt.join("after"), b"again").unwrap();
    assert_eq!(std::fs::read(m.mnt.join("after")).unwrap(), b"again");
    // A file kept open across the restart is reopened on the new connection.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.mnt.join("after"))
        .unwrap();
    bd.restart();
    let start = Instant::now();
    use std::io::Write;
    while f.write_all(b"!").is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "fd not reopened");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(f);
    assert_eq!(std::fs::read(m.mnt.join("after")).unwrap(), b"again!");
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn one_brick_process_serves_many_volumes_attach_and_detach() {
    let s = Setup::new("net-mux");
    let vf = s.server_volfile("server.vol", &["va", "vb", "vc"], &[]);
    let bd = Brickd::start(s.dir.path(), &vf, &[]);
    let ma = s.mount("va", bd.port, "a", &[]);
    let mb = s.mount("vb", bd.port, "b", &[]);
    let mc = s.mount("vc", bd.port, "c", &[]);
    for (m, n) in [(&ma, "a"), (&mb, "b"), (&mc, "c")] {
        std::fs::write(m.mnt.join("name"), n).unwrap();
    }
    // Volumes are separate: each sees only its own brick.
    assert_eq!(std::fs::read(ma.mnt.join("name")).unwrap(), b"a");
    assert_eq!(std::fs::read(mc.mnt.join("name")).unwrap(), b"c");
    assert!(s.path("bricks/vb/name").exists());

    // Attach a fourth volume while the others are in use.
    let vd = s.server_volfile("more.vol", &["vd"], &[]);
    let attached = ok(&bd.ctl("attach", &[vd.to_str().unwrap()]));
    assert!(attached.contains("vd"), "{attached}");
    let md = s.mount("vd", bd.port, "d", &[]);
    std::fs::write(md.mnt.join("name"), "d").unwrap();
    assert_eq!(std::fs::read(s.path("bricks/vd/name")).unwrap(), b"d");

    // Attaching a brick that is already served changes nothing.
    let again = bd.ctl("attach", &[vd.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already served"));

    // Detach one: its clients lose it, the others keep working.
    ok(&bd.ctl("detach", &["vb"]));
    let dump = ok(&bd.ctl("statedump", &[]));
    assert!(
        dump.contains("=== brick va ===") && dump.contains("[vd-server]"),
        "{dump}"
    );
    let status = ok(&bd.ctl("status", &[]));
    assert!(status.contains("va") && status.contains("vc") && status.contains("vd"));
    assert!(!status.contains("vb"), "{status}");
    assert!(std::fs::read(mb.mnt.join("name")).is_err());
    for (m, n) in [(&ma, "a"), (&mc, "c"), (&md, "d")] {
        assert_eq!(std::fs::read(m.mnt.join("name")).unwrap(), n.as_bytes());
        std::fs::write(m.mnt.join("more"), n).unwrap();
    }
    let bad = bd.ctl("detach", &["nosuch"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no brick named"));
}

#[test]
fn auth_reject_refuses_the_client_with_a_clear_error() {
    let s = Setup::new("net-auth");
    let vf = s.server_volfile("server.vol", &["locked"], &[("auth.reject", "127.0.0.1")]);
    let bd = Brickd::start(s.dir.path(), &vf, &[]);
    let cv = s.path("c.vol");
    std::fs::write(&cv, client_volfile("locked", bd.port, &[])).unwrap();
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = weft()
        .args(["mount", "--foreground", "--volfile"])
        .arg(&cv)
        .arg(&mnt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected by auth.reject"), "{err}");
    assert!(!is_mounted(&mnt));
    // A brick that does not exist: named in the error, never with the bricks the server
    // has (a peer learns nothing about other bricks).
    std::fs::write(&cv, client_volfile("nosuch", bd.port, &[])).unwrap();
    let out = weft()
        .args(["mount", "--foreground", "--volfile"])
        .arg(&cv)
        .arg(&mnt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no brick named \"nosuch\"") && !err.contains("locked"),
        "{err}"
    );
    assert!(bd.log_text().contains("rejected by auth.reject"));
}

#[test]
fn posix_behaviour_over_the_network_matches_a_local_directory() {
    let s = Setup::new("net-posix");
    let vf = s.server_volfile("server.vol", &["px"], &[]);
    let bd = Brickd::start(s.dir.path(), &vf, &[]);
    let m = s.mount("px", bd.port, "px", &[]);
    assert_behaves_like_local(&m.mnt, &m);
}

#[test]
fn a_python_translator_works_in_a_brick_graph() {
    let s = Setup::new("net-py");
    let brick = s.path("bricks/py");
    std::fs::create_dir_all(brick.join("ro")).unwrap();
    std::fs::write(brick.join("ro/file"), b"frozen").unwrap();
    let vf = s.path("server.vol");
    std::fs::write(
        &vf,
        format!(
            "volume py-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
             volume py-ro\n    type features/python\n    option module readonly\n    option path {}\n    option class ReadOnlyPrefix\n    option config prefix=/ro\n    subvolumes py-posix\nend-volume\n\n\
             volume py\n    type features/locks\n    subvolumes py-ro\nend-volume\n\n\
             volume py-server\n    type protocol/server\n    subvolumes py\nend-volume\n",
            brick.display(),
            python_examples().display()
        ),
    )
    .unwrap();
    let bd = Brickd::start(s.dir.path(), &vf, &[]);
    let m = s.mount("py", bd.port, "py", &[]);
    assert_eq!(std::fs::read(m.mnt.join("ro/file")).unwrap(), b"frozen");
    let e = std::fs::write(m.mnt.join("ro/file"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert_eq!(
        std::fs::create_dir(m.mnt.join("ro/sub"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EROFS)
    );
    std::fs::write(m.mnt.join("free"), b"ok").unwrap();
    assert_eq!(std::fs::read(m.mnt.join("free")).unwrap(), b"ok");
}

#[test]
fn many_lock_waiters_do_not_stall_the_mount() {
    let s = Setup::new("net-waiters");
    let vf = s.server_volfile("server.vol", &["w"], &[]);
    let bd = Brickd::start(s.dir.path(), &vf, &[]);
    let m = s.mount("w", bd.port, "w", &[]);
    let file = m.mnt.join("f");
    std::fs::write(&file, b"x").unwrap();
    let mut holder = hold_lock(&file);
    // More waiters than the mount has request threads (8). Each, once it has the lock,
    // appends "s ID" and then "e ID" with a pause between to a log on the mount.
    let log = m.mnt.join("log");
    std::fs::write(&log, b"").unwrap();
    let wait = "import fcntl, os, sys, time\nf = open(sys.argv[1], 'r+')\nfcntl.lockf(f, fcntl.LOCK_EX)\nfd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND)\nos.write(fd, ('s %s\\n' % sys.argv[3]).encode())\ntime.sleep(0.02)\nos.write(fd, ('e %s\\n' % sys.argv[3]).encode())\nos.close(fd)\n";
    let mut waiters: Vec<_> = (0..12)
        .map(|i| {
            python(
                wait,
                &[
                    file.to_str().unwrap(),
                    log.to_str().unwrap(),
                    &i.to_string(),
                ],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // They are blocked: none got the lock while it is held.
    for w in waiters.iter_mut() {
        assert!(
            w.try_wait().unwrap().is_none(),
            "a waiter got past a held lock"
        );
    }
    assert_eq!(
        std::fs::read(&log).unwrap(),
        b"",
        "a waiter wrote under a held lock"
    );
    // The mount still serves everything else.
    let start = Instant::now();
    std::fs::write(m.mnt.join("other"), b"free").unwrap();
    assert_eq!(std::fs::read(m.mnt.join("other")).unwrap(), b"free");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The holder lets go; every waiter gets the lock in turn and exits.
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let start = Instant::now();
    for mut w in waiters {
        loop {
            if let Some(st) = w.try_wait().unwrap() {
                assert!(st.success());
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = w.kill();
                panic!("a lock waiter never got the lock");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Served one at a time: every "s ID" is followed by its own "e ID", and all 12 ran.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 24, "{text}");
    let mut ids = Vec::new();
    for pair in lines.chunks(2) {
        let id = pair[0]
            .strip_prefix("s ")
            .unwrap_or_else(|| panic!("overlap:\n{text}"));
        assert_eq!(
            pair[1],
            format!("e {id}"),
            "two waiters held the lock at once:\n{text}"
        );
        ids.push(id.to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "{text}");
}

#[test]
fn a_file_that_held_a_lock_is_reopened_with_its_lock() {
    let s = Setup::new("net-lockfd");
    let vf = s.server_volfile("server.vol", &["l"], &[]);
    let mut bd = Brickd::start(s.dir.path(), &vf, &[]);
    let m = s.mount("l", bd.port, "l", &[("ping-timeout", "3")]);
    let file = m.mnt.join("f");
    std::fs::write(&file, b"x").unwrap();
    let script = r#"
import fcntl, os, sys, time, errno
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print('locked', flush=True)
sys.stdin.readline()
deadline = time.time() + 20
while time.time() < deadline:
    try:
        os.pwrite(fd, b'y', 0)
        print('WROTE')
        break
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            time.sleep(0.2)
            continue
        print(errno.errorcode[e.errno])
        break
"#;
    let mut p = python(script, &[file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, Write};
    let mut out = std::io::BufReader::new(p.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    bd.restart();
    // Wait until the mount is back, then let the process write through its old fd.
    let start = Instant::now();
    while std::fs::read(m.mnt.join("f")).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "mount did not recover"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = p.wait();
    // The lock was taken again on the restarted brick (nobody else wanted it), so the fd
    // keeps working (crates/cli/tests/lock_reconnect.rs has the conflicting case).
    assert_eq!(line.trim(), "WROTE", "{}", m.log_text());
    assert_eq!(std::fs::read(m.mnt.join("f")).unwrap(), b"y");
}
