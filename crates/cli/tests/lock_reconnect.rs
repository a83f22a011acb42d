//! Locks and open files across reconnects (issue 15, points 2 and 3), with a real
//! `weft brickd`, real FUSE mounts in their own processes, SIGKILL for real and TCP
//! connections killed with `ss -K`:
//! - a process holding an fcntl lock across a SIGKILL and restart of brickd still holds
//!   it (another mount gets EAGAIN) and its fds keep working;
//! - with a conflicting lock granted while the brick was away (the first mount stopped
//!   with SIGSTOP meanwhile), every fd of that owner on that file fails with EIO, with a
//!   log line naming the file, and its other files keep working;
//! - a dropped connection keeps the locks and an unlinked-open and a replaced-open file
//!   readable and writable after the reconnect, within the brick's grace-timeout;
//! - past the grace, locks are released (another mount gets the lock) and the unlinked
//!   file is gone (EBADF).
//!
//! `lock_resume_bench` (ignored; `scripts/bench/lock-resume.sh`) times how long an
//! application holding 100 locks on 100 files takes to write under each of them again
//! after a SIGKILL and restart of brickd.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A python3 process on a mount that runs one command per line and answers one line:
/// `open KEY PATH`, `lock KEY`, `unlock KEY`, `write KEY TEXT`, `read KEY`, `unlink PATH`,
/// `rename FROM TO`. I/O and locks are retried while they fail with ENOTCONN (the mount
/// reconnecting), for up to 30 s. Answers `ok`, `ok TEXT` for reads, or the errno's name.
const AGENT: &str = r#"
import errno, fcntl, os, sys, time
fds = {}
def retry(f):
    deadline = time.time() + 30
    while True:
        try:
            return f()
        except OSError as e:
            if e.errno == errno.ENOTCONN and time.time() < deadline:
                time.sleep(0.02)
                continue
            raise
def bench(n, folder):
    keys = []
    for i in range(n):
        fd = os.open(os.path.join(folder, 'f%d' % i), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        keys.append(fd)
    print('ready', flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    todo = list(keys)
    while todo:
        left = []
        for fd in todo:
            try:
                os.pwrite(fd, b'resumed', 0)
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    return errno.errorcode[e.errno]
                left.append(fd)
        todo = left
        if todo:
            time.sleep(0.001)
        if time.monotonic() - start > 60:
            return 'TIMEOUT'
    return 'ok %.1f' % ((time.monotonic() - start) * 1000)
for line in sys.stdin:
    a = line.split()
    try:
        c = a[0]
        if c == 'open':
            fds[a[1]] = os.open(a[2], os.O_RDWR | os.O_CREAT, 0o644)
            out = 'ok'
        elif c == 'lock':
            retry(lambda: fcntl.lockf(fds[a[1]], fcntl.LOCK_EX | fcntl.LOCK_NB))
            out = 'ok'
        elif c == 'unlock':
            retry(lambda: fcntl.lockf(fds[a[1]], fcntl.LOCK_UN))
            out = 'ok'
        elif c == 'write':
            retry(lambda: os.pwrite(fds[a[1]], a[2].encode(), 0))
            out = 'ok'
        elif c == 'read':
            out = 'ok ' + retry(lambda: os.pread(fds[a[1]], 100, 0)).decode()
        elif c == 'unlink':
            os.unlink(a[1])
            out = 'ok'
        elif c == 'rename':
            os.rename(a[1], a[2])
            out = 'ok'
        elif c == 'bench':
            out = bench(int(a[1]), a[2])
        else:
            out = 'unknown command'
    except OSError as e:
        out = errno.errorcode.get(e.errno, str(e.errno))
    print(out, flush=True)
"#;

/// A running [`AGENT`]; killed when dropped (before the mounts it uses: declare it after
/// them).
struct Agent {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Agent {
    fn start() -> Agent {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new("/usr/bin/python3");
        c.args(["-c", AGENT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = c.spawn().expect("spawn python3");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Agent { child, stdin, out }
    }

    /// Sends one command, returns its answer.
    fn say(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// Sends one command that must answer `ok`.
    fn ok(&mut self, cmd: &str) {
        let r = self.say(cmd);
        assert_eq!(r, "ok", "{cmd}: {r}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGSTOPs a process; SIGCONTs it when resumed or dropped (also when a test fails).
struct Stopped(i32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: kill(2) on a child of this test.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        Stopped(pid as i32)
    }
    fn resume(self) {}
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child of this test.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// A brickd serving one brick (posix < locks < protocol/server with `server_opts`), and
/// two mounts of it, each in its own `weft mount` process.
struct Net {
    // Dropped in this order: the mounts, the brick process, then the directory (removed
    // last: while mounted it cannot be, and it was left behind in /tmp).
    a: MountGuard,
    b: MountGuard,
    bd: Brickd,
    dir: tempfile::TempDir,
}

impl Net {
    fn new(tag: &str, server_opts: &[(&str, &str)]) -> Net {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        std::fs::create_dir(&brick).unwrap();
        let vf = dir.path().join("server.vol");
        std::fs::write(&vf, brick_graph("lr", &brick, server_opts)).unwrap();
        let bd = Brickd::start(dir.path(), &vf, &[]);
        let mount = |name: &str| {
            let cvf = dir.path().join(format!("{name}.vol"));
            std::fs::write(
                &cvf,
                client_volfile("lr", bd.port, &[("ping-timeout", "3")]),
            )
            .unwrap();
            let mnt = dir.path().join(format!("mnt-{name}"));
            std::fs::create_dir(&mnt).unwrap();
            mount_volfile(&cvf, &mnt, &dir.path().join(format!("{name}.log")), &[])
        };
        let (a, b) = (mount("a"), mount("b"));
        Net { a, b, bd, dir }
    }

    fn on_a(&self, name: &str) -> String {
        self.a.mnt.join(name).display().to_string()
    }
    fn on_b(&self, name: &str) -> String {
        self.b.mnt.join(name).display().to_string()
    }
    fn brick(&self) -> PathBuf {
        self.dir.path().join("brick")
    }

    /// Kills mount A's TCP connection to brickd with `ss -K` (both ends see it reset).
    fn kill_connection_of_a(&self) {
        let pid = format!("pid={},", self.a.pid());
        let port = self.bd.port;
        let filter = format!("( dport = :{port} )");
        let out = Command::new("ss")
            .args(["-tnpH", "state", "established", &filter])
            .output()
            .expect("ss");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let local = text
            .lines()
            .find(|l| l.contains(&pid))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("127.0.0.1:")))
            .and_then(|w| w.rsplit(':').next())
            .unwrap_or_else(|| panic!("no connection of mount A in:\n{text}"))
            .to_string();
        let filter = format!("( sport = :{local} and dport = :{port} )");
        let st = Command::new("ss")
            .args(["-K", "-tn", "state", "established", &filter])
            .stdout(Stdio::null())
            .status()
            .expect("ss -K");
        assert!(st.success(), "ss -K failed");
    }

    fn logs(&self) -> String {
        format!(
            "--- brickd ---\n{}\n--- mount a ---\n{}\n--- mount b ---\n{}",
            self.bd.log_text(),
            self.a.log_text(),
            self.b.log_text()
        )
    }
}

/// Retries `cmd` on `agent` while it answers EAGAIN, for up to `secs`.
fn until_ok(agent: &mut Agent, cmd: &str, secs: u64) -> Duration {
    let start = Instant::now();
    loop {
        let r = agent.say(cmd);
        if r == "ok" {
            return start.elapsed();
        }
        assert_eq!(r, "EAGAIN", "{cmd}");
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{cmd}: still EAGAIN after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_lock_survives_a_brick_restart() {
    let mut n = Net::new("lr-restart", &[]);
    std::fs::write(n.brick().join("lockf"), b"L").unwrap();
    std::fs::write(n.brick().join("data"), b"D").unwrap();
    let mut a = Agent::start();
    let mut b = Agent::start();
    a.ok(&format!("open lockf {}", n.on_a("lockf")));
    a.ok("lock lockf");
    a.ok(&format!("open data {}", n.on_a("data")));
    b.ok(&format!("open lockf {}", n.on_b("lockf")));
    assert_eq!(b.say("lock lockf"), "EAGAIN");

    n.bd.kill9();
    n.bd.restart();
    // The holder's fds work again (it waits for the reconnect) ...
    a.ok("write lockf held");
    a.ok("write data data");
    assert_eq!(a.say("read lockf"), "ok held");
    // ... and it still holds its lock: the other mount is refused once it is back too.
    assert_eq!(b.say("lock lockf"), "EAGAIN", "{}", n.logs());
    assert!(
        log_shows(|| n.a.log_text(), "took 1 locks again (0 lost)"),
        "{}",
        n.logs()
    );
    a.ok("unlock lockf");
    b.ok("lock lockf");
    assert_eq!(std::fs::read(n.brick().join("lockf")).unwrap(), b"held");
}

#[test]
fn a_lock_granted_elsewhere_while_the_brick_was_away_fails_every_fd_of_its_owner() {
    let mut n = Net::new("lr-conflict", &[]);
    std::fs::write(n.brick().join("lockf"), b"L").unwrap();
    std::fs::write(n.brick().join("data"), b"D").unwrap();
    let mut a = Agent::start();
    let mut b = Agent::start();
    a.ok(&format!("open lockf {}", n.on_a("lockf")));
    a.ok("lock lockf");
    // The same process's second fd on the locked file, and its fd on another file.
    a.ok(&format!("open again {}", n.on_a("lockf")));
    a.ok(&format!("open data {}", n.on_a("data")));
    b.ok(&format!("open lockf {}", n.on_b("lockf")));

    // Mount A is stopped while the brick restarts and mount B takes the lock.
    let stopped = Stopped::new(n.a.pid());
    n.bd.kill9();
    n.bd.restart();
    b.ok("lock lockf");
    stopped.resume();

    assert_eq!(a.say("write lockf x"), "EIO", "{}", n.logs());
    assert_eq!(a.say("read again"), "EIO");
    assert_eq!(a.say("lock lockf"), "EIO");
    // Its other file is not concerned.
    a.ok("write data d");
    assert_eq!(a.say("read data"), "ok d");
    log_shows(|| n.a.log_text(), "fail with EIO");
    let log = n.a.log_text();
    assert!(
        log.contains("lost the POSIX lock(s) of lock owner")
            && log.contains("lockf")
            && log.contains("fail with EIO"),
        "{}",
        n.logs()
    );
    // Nothing was written through the fds that lost the lock.
    assert_eq!(std::fs::read(n.brick().join("lockf")).unwrap(), b"L");
}

#[test]
fn a_dropped_connection_keeps_locks_and_open_files_within_the_grace() {
    let n = Net::new("lr-drop", &[]);
    std::fs::write(n.brick().join("lockf"), b"L").unwrap();
    let mut a = Agent::start();
    let mut b = Agent::start();
    a.ok(&format!("open lockf {}", n.on_a("lockf")));
    a.ok("lock lockf");
    // An unlinked-open file and a replaced-open file.
    a.ok(&format!("open data {}", n.on_a("data")));
    a.ok("write data precious");
    a.ok(&format!("unlink {}", n.on_a("data")));
    a.ok(&format!("open old {}", n.on_a("old")));
    a.ok("write old old-contents");
    std::fs::write(n.on_b("new"), b"new-contents").unwrap();
    b.ok(&format!("rename {} {}", n.on_b("new"), n.on_b("old")));
    b.ok(&format!("open lockf {}", n.on_b("lockf")));

    n.kill_connection_of_a();
    assert_eq!(b.say("lock lockf"), "EAGAIN");
    assert_eq!(a.say("read data"), "ok precious", "{}", n.logs());
    a.ok("write data PRECIOUS");
    assert_eq!(a.say("read data"), "ok PRECIOUS");
    assert_eq!(a.say("read old"), "ok old-contents");
    a.ok("write old OLD");
    assert_eq!(a.say("read old"), "ok OLD-contents");
    a.ok("write lockf M");
    assert_eq!(b.say("lock lockf"), "EAGAIN");
    let (bl, al) = (n.bd.log_text(), n.a.log_text());
    assert!(
        bl.contains("keeping the") && bl.contains("gets its open files and locks back"),
        "{}",
        n.logs()
    );
    assert!(al.contains("resumed: the brick kept"), "{}", n.logs());
    assert_eq!(
        std::fs::read_to_string(n.brick().join("old")).unwrap(),
        "new-contents"
    );
    a.ok("unlock lockf");
    b.ok("lock lockf");
}

#[test]
fn past_the_grace_locks_and_open_files_are_released() {
    let n = Net::new("lr-grace", &[("grace-timeout", "2")]);
    std::fs::write(n.brick().join("lockf"), b"L").unwrap();
    let mut a = Agent::start();
    let mut b = Agent::start();
    a.ok(&format!("open lockf {}", n.on_a("lockf")));
    a.ok("lock lockf");
    a.ok(&format!("open data {}", n.on_a("data")));
    a.ok("write data precious");
    a.ok(&format!("unlink {}", n.on_a("data")));
    b.ok(&format!("open lockf {}", n.on_b("lockf")));

    // Mount A is stopped and its connection killed: it cannot come back in time.
    let stopped = Stopped::new(n.a.pid());
    n.kill_connection_of_a();
    let killed = Instant::now();
    assert_eq!(b.say("lock lockf"), "EAGAIN");
    until_ok(&mut b, "lock lockf", 15);
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "released after {after:?}"
    );
    assert!(
        log_shows(|| n.bd.log_text(), "did not reconnect within"),
        "{}",
        n.logs()
    );
    stopped.resume();
    // Its lock is gone (another client holds it now) and so is the unlinked file.
    assert_eq!(a.say("write lockf x"), "EIO", "{}", n.logs());
    assert_eq!(a.say("read data"), "EBADF", "{}", n.logs());
}

/// Times how long an application holding 100 fcntl locks on 100 files takes, after a
/// SIGKILL and restart of brickd (from the moment the new brickd listens), until a write
/// under each lock has succeeded; prints a `lock-resume-report:` line per run
/// (`LOCK_RESUME_RUNS`, default 5).
#[test]
#[ignore = "a measurement: scripts/bench/lock-resume.sh"]
fn lock_resume_bench() {
    let runs: usize = std::env::var("LOCK_RESUME_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let locks = 100;
    for run in 1..=runs {
        let mut n = Net::new("lr-bench", &[]);
        let folder = n.a.mnt.join("many");
        std::fs::create_dir(&folder).unwrap();
        let mut a = Agent::start();
        assert_eq!(
            a.say(&format!("bench {locks} {}", folder.display())),
            "ready"
        );
        let log_before = n.a.log_text().len();
        n.bd.kill9();
        n.bd.restart();
        let listening = Instant::now();
        let r = a.say("go");
        let total = listening.elapsed();
        assert!(r.starts_with("ok "), "{r}\n{}", n.logs());
        let log = n.a.log_text();
        let restore = log[log_before..]
            .lines()
            .find(|l| l.contains("took") && l.contains("locks again"))
            .and_then(|l| l.rsplit(" in ").next())
            .and_then(|s| s.trim().strip_suffix(" ms").map(str::to_string))
            .unwrap_or_else(|| "?".into());
        assert!(
            log[log_before..].contains(&format!("took {locks} locks again (0 lost)")),
            "{}",
            n.logs()
        );
        println!(
            "lock-resume-report: run={run} locks={locks} resumed_ms={:.1} client_restore_ms={restore}",
            total.as_secs_f64() * 1e3
        );
        drop(a);
    }
}
