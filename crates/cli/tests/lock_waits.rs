//! Waits that end: a process blocked in F_SETLKW on a network mount returns EINTR on a
//! signal and dies at once on SIGKILL, and thousands of waiters leave the mount serving.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const HOLDER: &str = r#"
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
fcntl.lockf(fd, fcntl.LOCK_UN)
print("released", flush=True)
sys.stdin.readline()
"#;

const WAITER: &str = r#"
import fcntl, os, signal, sys, time
class Stop(Exception): pass
def on_int(*_): raise Stop()
signal.signal(signal.SIGINT, on_int)
fd = os.open(sys.argv[1], os.O_RDWR)
print("waiting", flush=True)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("granted", flush=True)
except Stop:
    print("interrupted", flush=True)
"#;

fn holder(p: &std::path::Path) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut h = Command::new("/usr/bin/python3")
        .args(["-c", HOLDER])
        .arg(p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(h.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "held");
    (h, out)
}

/// SIGINT ends a blocked F_SETLKW with EINTR within a second; SIGKILL ends the process at
/// once; neither leaves a lock behind: once the holder unlocks, another process gets it.
#[test]
fn a_blocked_lock_wait_ends_on_a_signal() {
    let n = NetVolume::new("lkintr", 1, false);
    let f = n.mnt(0).join("f");
    let (mut h, mut hout) = holder(&f);
    for sig in [libc::SIGINT, libc::SIGKILL] {
        let mut w = Command::new("/usr/bin/python3")
            .args(["-c", WAITER])
            .arg(&f)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut wout = BufReader::new(w.stdout.take().unwrap());
        let mut line = String::new();
        wout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "waiting");
        std::thread::sleep(Duration::from_millis(300)); // in F_SETLKW by now
        let t = Instant::now();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(w.id() as i32, sig) };
        let st = w.wait().unwrap();
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "signal {sig} took {took:?} to end the waiter"
        );
        if sig == libc::SIGINT {
            line.clear();
            wout.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "interrupted", "{st:?}");
        }
    }
    h.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let mut line = String::new();
    hout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "released");
    // Nobody who gave up holds it now.
    let o = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import fcntl,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX|fcntl.LOCK_NB); print('ok')",
        ])
        .arg(&f)
        .output()
        .unwrap();
    let start = Instant::now();
    let mut ok = String::from_utf8_lossy(&o.stdout).trim() == "ok";
    while !ok && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        let o = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import fcntl,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX|fcntl.LOCK_NB); print('ok')",
            ])
            .arg(&f)
            .output()
            .unwrap();
        ok = String::from_utf8_lossy(&o.stdout).trim() == "ok";
    }
    assert!(ok, "a lock went to a waiter that gave up");
    h.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    h.wait().unwrap();
}

const MANY_WAITERS: &str = r#"
import fcntl, os, resource, struct, sys, threading, time
p, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
fds = [os.open(p, os.O_RDWR) for _ in range(n)]  # every waiter's own open file description
granted = [0]
lock = threading.Lock()
def wait(fd):
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, struct.pack("hhqqii", fcntl.F_WRLCK, 0, 0, 0, 0, 0))
    with lock:
        granted[0] += 1
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqii", fcntl.F_UNLCK, 0, 0, 0, 0, 0))
    os.close(fd)
threads = [threading.Thread(target=wait, args=(fd,), daemon=True) for fd in fds]
for t in threads:
    t.start()
print("started", flush=True)
deadline = time.time() + 120
for t in threads:
    t.join(max(0, deadline - time.time()))
print("granted", granted[0], flush=True)
"#;

/// 2,000 OFD-lock waiters on one file: stat on the mount still answers at once, the
/// holder can unlock, and then every waiter gets the lock in turn.
#[test]
fn two_thousand_waiters_leave_the_mount_serving() {
    let n = NetVolume::new("lkmany", 1, false);
    let f = n.mnt(0).join("f");
    let (mut h, mut hout) = holder(&f);
    let waiters = 2000;
    let mut w = Command::new("/usr/bin/python3")
        .args(["-c", MANY_WAITERS])
        .arg(&f)
        .arg(waiters.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut wout = BufReader::new(w.stdout.take().unwrap());
    let mut line = String::new();
    wout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started");
    std::thread::sleep(Duration::from_secs(2)); // let them all queue
    let t = Instant::now();
    for i in 0..20 {
        std::fs::metadata(&f).unwrap();
        std::fs::write(n.mnt(0).join(format!("other{i}")), b"x").unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the mount stalled behind the waiters: {:?}",
        t.elapsed()
    );
    h.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    line.clear();
    hout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "released");
    line.clear();
    wout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("granted {waiters}"));
    assert!(w.wait().unwrap().success());
    h.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    h.wait().unwrap();
}
