//! Documented network behaviours, each with real `weft brickd` processes on 127.0.0.1 and
//! real FUSE mounts in their own `weft mount` processes:
//! - a brick server that goes silent without closing its connection (SIGSTOP) fails the
//!   in-flight and new FOPs with ENOTCONN after `ping-timeout`, and the mount works again
//!   once it answers (SIGCONT);
//! - with the brick server gone, protocol/client retries with a doubling backoff capped at
//!   3 s (connection attempts counted on a listener the test holds on the brick's port),
//!   and recovers within that cap once brickd listens again;
//! - `weft brickd detach` releases the locks of the brick's clients: after `attach` another
//!   mount takes the lock, and the first mount's fds on that file answer EIO;
//! - one brickd with a certificate serves a TLS-only brick and an open brick: a plain
//!   client is refused by the first with the reason and served by the second, a TLS client
//!   is served by both, all at once;
//! - performance/write-behind acknowledges writes early up to `cache-size` and then makes
//!   the writer wait (a Python translator on the brick slows every write), and unmounting
//!   with writes pending behind leaves every byte on the brick;
//! - statfs through a network mount is the brick filesystem's statvfs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// A python3 process on a mount that runs one command per line and answers one line:
/// `open KEY PATH`, `lock KEY` (non-blocking), `write KEY TEXT` (at offset 0), `read KEY`,
/// `timed_write KEY TEXT` (no retry; answers `RESULT SECONDS`). `lock`, `write` and
/// `read` are retried while they fail with ENOTCONN (a mount reconnecting), for up to
/// 20 s. Answers `ok`, `ok TEXT` for reads, or the errno's name.
const AGENT: &str = r#"
import errno, fcntl, os, sys, time
fds = {}
def retry(f):
    deadline = time.time() + 20
    while True:
        try:
            return f()
        except OSError as e:
            if e.errno == errno.ENOTCONN and time.time() < deadline:
                time.sleep(0.02)
                continue
            raise
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
        elif c == 'write':
            retry(lambda: os.pwrite(fds[a[1]], a[2].encode(), 0))
            out = 'ok'
        elif c == 'read':
            out = 'ok ' + retry(lambda: os.pread(fds[a[1]], 100, 0)).decode()
        elif c == 'timed_write':
            t = time.monotonic()
            try:
                os.pwrite(fds[a[1]], a[2].encode(), 0)
                out = 'ok'
            except OSError as e:
                out = errno.errorcode.get(e.errno, str(e.errno))
            out += ' %.3f' % (time.monotonic() - t)
        else:
            out = 'unknown command'
    except OSError as e:
        out = errno.errorcode.get(e.errno, str(e.errno))
    print(out, flush=True)
"#;

/// A running [`AGENT`]; killed when dropped (declare it after the mounts it uses).
struct Agent {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Agent {
    fn start() -> Agent {
        let (child, stdin, lines) = python_lines(AGENT, &[]);
        Agent {
            child,
            stdin,
            lines,
        }
    }

    /// Sends one command; its answer, or `None` if none came within `within`.
    fn say_within(&mut self, cmd: &str, within: Duration) -> Option<String> {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.lines.recv_timeout(within).ok()
    }

    /// Sends one command, returns its answer (30 s at most).
    fn say(&mut self, cmd: &str) -> String {
        self.say_within(cmd, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{cmd}: no answer within 30 s"))
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

/// Starts `python3 -c script ARGS` (killed if the test dies) with piped stdin; its stdout
/// lines arrive on the channel (read by a thread, so a test can wait with a timeout).
fn python_lines(
    script: &str,
    args: &[&std::ffi::OsStr],
) -> (Child, ChildStdin, mpsc::Receiver<String>) {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("/usr/bin/python3");
    c.arg("-c")
        .arg(script)
        .args(args)
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
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            let Ok(l) = l else { break };
            if tx.send(l.trim().to_string()).is_err() {
                break;
            }
        }
    });
    (child, stdin, rx)
}

/// SIGSTOPs a process; SIGCONTs it when resumed or dropped (also when a test fails).
struct Stopped(i32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        assert!(pid > 0);
        // SAFETY: kill(2) on a child of this test.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        // A group stop is not instant on a busy machine: wait until every thread is stopped
        // (each task's state `T`), so nothing the test sends next is answered.
        let t0 = Instant::now();
        let stopped = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|rd| {
                    rd.filter_map(|e| e.ok()).all(|e| {
                        std::fs::read_to_string(e.path().join("stat"))
                            .map(|st| {
                                st.rsplit_once(") ")
                                    .is_some_and(|(_, rest)| rest.starts_with('T'))
                            })
                            .unwrap_or(true)
                    })
                })
                .unwrap_or(true)
        };
        while !stopped() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
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

/// A tmpfs mounted at a folder with mount options `opts`; unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: &Path, opts: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The errno of an `io::Result` as its name (`ok` on success).
fn errname<T>(r: std::io::Result<T>) -> String {
    match errno_of(r) {
        0 => "ok".into(),
        libc::ENOTCONN => "ENOTCONN".into(),
        libc::EIO => "EIO".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::ENOENT => "ENOENT".into(),
        e => format!("errno {e}"),
    }
}

/// Writes `client` (a client volfile) as `NAME.vol` in `dir` and mounts it at `mnt-NAME`,
/// logging to `NAME.log`.
fn mount_text(dir: &Path, name: &str, client: &str) -> MountGuard {
    let cvf = dir.join(format!("{name}.vol"));
    std::fs::write(&cvf, client).unwrap();
    let mnt = dir.join(format!("mnt-{name}"));
    std::fs::create_dir_all(&mnt).unwrap();
    mount_volfile(&cvf, &mnt, &dir.join(format!("{name}.log")), &[])
}

/// Retries `f` every 20 ms until it succeeds; how long that took, or the last error
/// once `limit` has passed.
fn until_ok<T>(
    limit: Duration,
    mut f: impl FnMut() -> std::io::Result<T>,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() > limit => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. ping-timeout

/// A brick server that stops answering without closing the connection (SIGSTOP): a FOP in
/// flight fails with ENOTCONN once `ping-timeout` (3 s) has passed, not before and not
/// never; new FOPs then fail with ENOTCONN at once; after SIGCONT the mount reconnects and
/// the same open fd writes again.
#[test]
fn a_silent_brick_fails_fops_after_the_ping_timeout_and_the_mount_comes_back() {
    const PING: u64 = 3;
    let dir = scratch("nb-ping");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("server.vol");
    std::fs::write(&vf, brick_graph("pt", &brick, &[])).unwrap();
    let bd = Brickd::start(dir.path(), &vf, &[]);
    let m = mount_text(
        dir.path(),
        "m",
        &client_volfile("pt", bd.port, &[("ping-timeout", &PING.to_string())]),
    );
    std::fs::write(m.mnt.join("f"), b"").unwrap();
    let mut a = Agent::start();
    a.ok(&format!("open f {}", m.mnt.join("f").display()));
    a.ok("write f warm");

    let stopped = Stopped::new(bd.pid());
    let t0 = Instant::now();
    // A write in flight while the server is silent.
    let r = a.say_within("timed_write f silent", Duration::from_secs(PING + 5));
    let took = t0.elapsed();
    let r = r.unwrap_or_else(|| {
        panic!(
            "a write to a silent brick hung for {} s (ping-timeout {PING} s)\n{}",
            PING + 5,
            m.log_text()
        )
    });
    assert!(r.starts_with("ENOTCONN "), "the write answered {r:?}");
    // The last sign of life came at most ping-timeout/3 before the stop.
    assert!(
        took >= Duration::from_millis(PING * 1000 * 2 / 3 - 200),
        "the write failed after {took:?}, before the ping-timeout of {PING} s could pass"
    );
    assert!(took < Duration::from_secs(PING + 5), "{took:?}");
    assert!(
        log_shows(|| m.log_text(), "(ping-timeout)"),
        "{}",
        m.log_text()
    );
    // New FOPs fail at once with ENOTCONN (nothing waits for a connection) while the
    // server stays silent.
    let t = Instant::now();
    let r = std::fs::write(m.mnt.join("new-while-silent"), b"x");
    assert_eq!(errname(r), "ENOTCONN");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    stopped.resume();
    let back = until_ok(Duration::from_secs(25), || {
        std::fs::write(m.mnt.join("after"), b"after")
    })
    .unwrap_or_else(|e| panic!("the mount did not come back: {e}\n{}", m.log_text()));
    eprintln!("failed after {took:?}; back {back:?} after SIGCONT");
    // The fd opened before the silence works again (the failed write may or may not
    // have reached the brick: its reply was lost with the connection; this one is as
    // long, so the file reads the same either way).
    a.ok("write f AGAIN!");
    assert_eq!(a.say("read f"), "ok AGAIN!");
    assert_eq!(std::fs::read(m.mnt.join("f")).unwrap(), b"AGAIN!");
    assert_eq!(std::fs::read(brick.join("after")).unwrap(), b"after");
}

// ---------------------------------------------------------------------------------------
// 2. reconnect backoff

/// With the brick server killed, the client tries again after 100 ms, doubling to at most
/// 3 s: a listener the test holds on the brick's port (accepting and closing every
/// connection, so each attempt fails) counts the attempts over 10 s. Then brickd listens on
/// the port again and the mount works within the 3 s cap.
#[test]
fn a_lost_brick_is_retried_with_a_doubling_backoff_and_found_again() {
    let dir = scratch("nb-backoff");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("server.vol");
    std::fs::write(&vf, brick_graph("bo", &brick, &[])).unwrap();
    let mut bd = Brickd::start(dir.path(), &vf, &[]);
    let m = mount_text(dir.path(), "m", &client_volfile("bo", bd.port, &[]));
    std::fs::write(m.mnt.join("f"), b"kept").unwrap();

    let port = bd.port;
    bd.kill9();
    let killed = Instant::now();
    let listener = {
        let t = Instant::now();
        loop {
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) => assert!(t.elapsed() < Duration::from_secs(2), "bind {port}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    listener.set_nonblocking(true).unwrap();
    let mut attempts: Vec<Duration> = Vec::new();
    while killed.elapsed() < Duration::from_secs(10) {
        match listener.accept() {
            // Closed at once: the client's handshake fails and it backs off.
            Ok((s, _)) => {
                attempts.push(killed.elapsed());
                drop(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    drop(listener);
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let shown: Vec<String> = attempts
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect();
    let report = format!(
        "attempts at {} s after the kill; gaps {gaps:.2?}",
        shown.join(", ")
    );
    eprintln!("{report}");
    // 100 ms doubling, capped at 3 s: 0.1, 0.2, 0.4, 0.8, 1.6, 3.0, 3.0 s apart, so 6 to 9
    // attempts in 10 s (the first may hit the closed port before the listener).
    assert!(
        (4..=9).contains(&attempts.len()),
        "{} connection attempts in 10 s: {report}",
        attempts.len()
    );
    assert!(
        gaps.iter().all(|g| *g >= 0.08),
        "attempts closer than the 100 ms first backoff: {report}"
    );
    // Each wait at least about doubles until the cap...
    for w in gaps.windows(2) {
        assert!(
            w[1] >= w[0] * 1.5 || w[1] >= 2.5,
            "the backoff did not grow: {report}"
        );
    }
    // ... and the cap is 3 s.
    let longest = gaps.iter().cloned().fold(0.0, f64::max);
    assert!(
        (2.5..3.3).contains(&longest),
        "the longest wait was {longest:.2} s, not the 3 s cap: {report}"
    );

    // brickd listens again on the same port: the client, now waiting 3 s between
    // attempts, is back within about that.
    bd.restart();
    let back = until_ok(Duration::from_secs(15), || {
        std::fs::write(m.mnt.join("after"), b"after")
    })
    .unwrap_or_else(|e| panic!("the mount did not come back: {e}\n{}", m.log_text()));
    eprintln!("back {back:?} after brickd listened again");
    assert!(
        back < Duration::from_millis(4500),
        "the mount came back {back:?} after brickd listened again (backoff cap 3 s)\n{}",
        m.log_text()
    );
    assert_eq!(std::fs::read(m.mnt.join("f")).unwrap(), b"kept");
    assert_eq!(std::fs::read(brick.join("after")).unwrap(), b"after");
    let log = m.log_text();
    assert!(log.contains("disconnected from"), "{log}");
    assert!(log.matches("connected to 127.0.0.1").count() >= 2, "{log}");
}

// ---------------------------------------------------------------------------------------
// 3. detach releases locks

/// Mount A holds an fcntl lock; the brick is detached and attached again (mount A stopped
/// meanwhile, so mount B is back first): mount B gets the lock, and mount A, finding its
/// lock gone and granted elsewhere, fails the lock's fd with EIO (close too) instead of
/// carrying on as if it held it.
#[test]
fn detaching_a_brick_releases_its_locks() {
    let dir = scratch("nb-detach");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let vf = dir.path().join("server.vol");
    std::fs::write(&vf, brick_graph("dl", &brick, &[])).unwrap();
    let bd = Brickd::start(dir.path(), &vf, &[]);
    let client = client_volfile("dl", bd.port, &[("ping-timeout", "3")]);
    let ma = mount_text(dir.path(), "a", &client);
    let mb = mount_text(dir.path(), "b", &client);
    std::fs::write(brick.join("lockf"), b"L").unwrap();
    let logs = || {
        format!(
            "--- brickd ---\n{}\n--- mount a ---\n{}\n--- mount b ---\n{}",
            bd.log_text(),
            ma.log_text(),
            mb.log_text()
        )
    };
    let mut a = Agent::start();
    let mut b = Agent::start();
    a.ok(&format!("open l {}", ma.mnt.join("lockf").display()));
    a.ok("lock l");
    b.ok(&format!("open l {}", mb.mnt.join("lockf").display()));
    assert_eq!(b.say("lock l"), "EAGAIN");

    let stopped = Stopped::new(ma.pid());
    let out = bd.ctl("detach", &["dl"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("detached dl"),
        "detach: {out:?}"
    );
    let out = bd.ctl("attach", &[vf.to_str().unwrap()]);
    assert!(out.status.success(), "attach: {out:?}");
    // Mount B reconnects (ENOTCONN until then) and gets the lock A held.
    assert_eq!(
        b.say("lock l"),
        "ok",
        "mount B could not take the lock after the detach\n{}",
        logs()
    );
    stopped.resume();

    // Mount A's fd on the file fails (ENOTCONN is retried while A reconnects).
    assert_eq!(a.say("write l x"), "EIO", "{}", logs());
    assert_eq!(a.say("lock l"), "EIO", "{}", logs());
    assert!(
        log_shows(|| ma.log_text(), "lost the POSIX lock(s)"),
        "{}",
        logs()
    );
    assert!(bd.log_text().contains("brick detached"), "{}", logs());
    // Nothing was written through A's fd, and B's lock is still B's.
    b.ok("write l B");
    assert_eq!(std::fs::read(brick.join("lockf")).unwrap(), b"B");
}

// ---------------------------------------------------------------------------------------
// 4. TLS and plain clients on one brickd

/// Writes a CA and a server certificate for 127.0.0.1 signed by it into `dir`; returns
/// (ca.pem, server.pem, server.key).
fn make_certs(dir: &Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("server.pem"), cert.pem()).unwrap();
    std::fs::write(p("server.key"), key.serialize_pem()).unwrap();
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// Runs `weft mount --foreground` of `volfile` at `mnt`, which must fail: its output, or
/// what happened instead (it mounted, or still ran after 20 s; it is then stopped).
fn mount_refused(volfile: &Path, mnt: &Path, log: &Path) -> Result<String, String> {
    let logf = std::fs::File::create(log).unwrap();
    let mut child = weft()
        .args(["mount", "--foreground", "--volfile"])
        .arg(volfile)
        .arg(mnt)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("spawn weft mount");
    let start = Instant::now();
    let outcome = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break if st.success() {
                Err("weft mount exited 0".to_string())
            } else {
                Ok(())
            };
        }
        if is_mounted(mnt) {
            break Err("it was mounted".to_string());
        }
        if start.elapsed() > Duration::from_secs(20) {
            break Err("weft mount still ran after 20 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if outcome.is_err() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        if is_mounted(mnt) {
            let _ = Command::new("umount").arg("-l").arg(mnt).status();
        }
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    outcome
        .map(|_| text.clone())
        .map_err(|e| format!("{e}:\n{text}"))
}

/// One brickd with a certificate serves brick `sec` (`transport.socket.ssl-enabled on`)
/// and brick `open` (no option): a plain client is refused by `sec` with the reason and
/// served by `open`; TLS clients are served by both; all three mounts work at once.
#[test]
fn one_brickd_serves_a_tls_only_brick_and_an_open_one_to_both_kinds_of_client() {
    let dir = scratch("nb-tls");
    let (ca, cert, key) = make_certs(dir.path());
    let (sec, open) = (dir.path().join("sec"), dir.path().join("open"));
    std::fs::create_dir(&sec).unwrap();
    std::fs::create_dir(&open).unwrap();
    let vf = dir.path().join("server.vol");
    let mut text = brick_graph("sec", &sec, &[("transport.socket.ssl-enabled", "on")]);
    text.push_str(&brick_graph("open", &open, &[]));
    std::fs::write(&vf, text).unwrap();
    let bd = Brickd::start(dir.path(), &vf, &["--tls-cert", &cert, "--tls-key", &key]);
    let tls = [
        ("transport.socket.ssl-enabled", "on"),
        ("transport.socket.ssl-ca-list", ca.as_str()),
    ];

    // A plain client: refused by the TLS-only brick, with the reason.
    let refused = dir.path().join("plain-sec.vol");
    std::fs::write(&refused, client_volfile("sec", bd.port, &[])).unwrap();
    let mnt = dir.path().join("mnt-refused");
    std::fs::create_dir(&mnt).unwrap();
    let err = mount_refused(&refused, &mnt, &dir.path().join("plain-sec.log"))
        .unwrap_or_else(|e| panic!("a plain client of the TLS-only brick: {e}"));
    assert!(
        err.contains("brick \"sec\" requires TLS (transport.socket.ssl-enabled)"),
        "{err}"
    );

    // Served: plain to `open`, TLS to `open` and to `sec`, all mounted together.
    let plain_open = mount_text(
        dir.path(),
        "plain-open",
        &client_volfile("open", bd.port, &[]),
    );
    let tls_open = mount_text(
        dir.path(),
        "tls-open",
        &client_volfile("open", bd.port, &tls),
    );
    let tls_sec = mount_text(dir.path(), "tls-sec", &client_volfile("sec", bd.port, &tls));
    std::fs::write(plain_open.mnt.join("from-plain"), b"plain").unwrap();
    std::fs::write(tls_open.mnt.join("from-tls"), b"tls").unwrap();
    std::fs::write(tls_sec.mnt.join("secret"), b"secret").unwrap();
    assert_eq!(
        std::fs::read(tls_open.mnt.join("from-plain")).unwrap(),
        b"plain"
    );
    assert_eq!(
        std::fs::read(plain_open.mnt.join("from-tls")).unwrap(),
        b"tls"
    );
    assert_eq!(std::fs::read(sec.join("secret")).unwrap(), b"secret");
    assert_eq!(std::fs::read(open.join("from-tls")).unwrap(), b"tls");

    let status = bd.ctl("status", &[]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains("open clients=2") && status.contains("sec clients=1"),
        "{status}"
    );
    let log = bd.log_text();
    let connected = |brick: &str, tls: bool| {
        log.lines().any(|l| {
            l.contains("client connected")
                && l.contains(&format!("brick={brick}"))
                && l.contains(&format!("tls={tls}"))
        })
    };
    assert!(connected("open", false), "{log}");
    assert!(connected("open", true), "{log}");
    assert!(connected("sec", true), "{log}");
    assert!(!connected("sec", false), "{log}");
    assert!(log.contains("requires TLS"), "{log}");
}

// ---------------------------------------------------------------------------------------
// 5. write-behind window and the drain at unmount

/// A brick-side Python translator that sleeps `delay` seconds in every writev.
const SLOW_WRITES: &str = r#"
import time

class Translator:
    def __init__(self, init):
        self.delay = float(init.config.get("delay", "0.5"))

    def writev(self, ctx, args):
        time.sleep(self.delay)
        return ctx.wind()
"#;

/// Seconds each brick write is held by [`SLOW_WRITES`].
const DELAY: f64 = 0.5;

/// A brickd serving brick `wb` (posix < slow writes < locks < protocol/server) and a mount
/// of it through performance/write-behind with `cache-size 64KB`.
struct SlowBrick {
    /// Declared first: stopped before the folder goes.
    _bd: Brickd,
    brick: PathBuf,
    _dir: tempfile::TempDir,
}

impl SlowBrick {
    fn new(tag: &str) -> (SlowBrick, MountGuard) {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        std::fs::create_dir(&brick).unwrap();
        let py = dir.path().join("py");
        std::fs::create_dir(&py).unwrap();
        std::fs::write(py.join("slow_writes.py"), SLOW_WRITES).unwrap();
        let vf = dir.path().join("server.vol");
        std::fs::write(
            &vf,
            format!(
                "volume wb-posix\n    type storage/posix\n    option directory {}\nend-volume\n\n\
                 volume wb-slow\n    type features/python\n    option module slow_writes\n    option path {}\n    option config delay={DELAY}\n    subvolumes wb-posix\nend-volume\n\n\
                 volume wb\n    type features/locks\n    subvolumes wb-slow\nend-volume\n\n\
                 volume wb-server\n    type protocol/server\n    subvolumes wb\nend-volume\n",
                brick.display(),
                py.display()
            ),
        )
        .unwrap();
        let bd = Brickd::start(dir.path(), &vf, &[]);
        let mut client = client_volfile("wb", bd.port, &[]);
        client.push_str(
            "\nvolume wb-wb\n    type performance/write-behind\n    option cache-size 64KB\n    subvolumes wb-client\nend-volume\n",
        );
        let m = mount_text(dir.path(), "m", &client);
        (
            SlowBrick {
                _bd: bd,
                brick,
                _dir: dir,
            },
            m,
        )
    }
}

/// Writes `COUNT` chunks of `SIZE` bytes (chunk i all of byte i % 251 + 1) to a new file,
/// timing each write; prints the times (seconds, space-separated), then waits for a line
/// on stdin; then closes the file (`close`) or leaves without closing it (`leave`).
const TIMED_WRITER: &str = r#"
import os, sys, time
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
times = []
for i in range(count):
    t = time.monotonic()
    n = os.write(fd, bytes([i % 251 + 1]) * size)
    times.append(time.monotonic() - t)
    assert n == size, n
print(' '.join('%.4f' % t for t in times), flush=True)
if sys.stdin.readline().strip() == 'close':
    os.close(fd)
    print('closed', flush=True)
os._exit(0)
"#;

fn expected_chunks(count: usize, size: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| std::iter::repeat_n((i % 251 + 1) as u8, size))
        .collect()
}

/// Runs [`TIMED_WRITER`] on `file`; returns the process, its stdin, its lines and the
/// times of its writes.
fn timed_writes(
    file: &Path,
    count: usize,
    size: usize,
) -> (Child, ChildStdin, mpsc::Receiver<String>, Vec<f64>) {
    let (child, stdin, lines) = python_lines(
        TIMED_WRITER,
        &[
            file.as_os_str(),
            count.to_string().as_ref(),
            size.to_string().as_ref(),
        ],
    );
    let times = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the writer did not finish its writes within 60 s");
    let times: Vec<f64> = times
        .split_whitespace()
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("writer said {times:?}"))
        })
        .collect();
    assert_eq!(times.len(), count);
    (child, stdin, lines, times)
}

/// With a 64 KiB window and every brick write taking 0.5 s, four 16 KiB writes fill the
/// window and the fifth, which crosses it, is acknowledged too (as GlusterFS counts its
/// window); the sixth waits for room; everything reaches the brick.
#[test]
fn write_behind_acknowledges_up_to_its_window_then_the_writer_waits() {
    let (s, m) = SlowBrick::new("nb-wbwin");
    let (count, size) = (16usize, 16usize << 10);
    let (mut child, mut stdin, lines, times) = timed_writes(&m.mnt.join("f"), count, size);
    let shown: Vec<String> = times.iter().map(|t| format!("{t:.3}")).collect();
    eprintln!("write times (s): {}", shown.join(" "));
    let fast = times.iter().take_while(|t| **t < DELAY / 2.0).count();
    assert_eq!(
        fast,
        (64 << 10) / size + 1,
        "writes acknowledged before the first that waited (each brick write takes {DELAY} s): times {shown:?}"
    );
    assert!(
        times[fast] >= DELAY / 2.0,
        "the write after the window did not wait: {shown:?}"
    );
    // The window keeps limiting: the writer could not run ahead by more than it and
    // the one write that crosses it.
    let total: f64 = times.iter().sum();
    let ahead = (64 << 10) + size;
    let batches = (count * size - ahead) / ahead;
    assert!(
        total >= batches as f64 * DELAY * 0.8,
        "{count} writes took {total:.2} s in all: {shown:?}"
    );
    writeln!(stdin, "close").unwrap();
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(30)).as_deref(),
        Ok("closed")
    );
    let _ = child.wait();
    assert!(
        std::fs::read(s.brick.join("f")).unwrap() == expected_chunks(count, size),
        "the brick file is not what was written"
    );
    drop(m);
    drop(s);
}

/// Writes still pending behind (the writer keeps its file open) when the mount process
/// gets SIGTERM are all on the brick once it has exited: unmounting releases the open fd
/// and fini drains write-behind before the connection closes.
#[test]
fn unmounting_with_writes_pending_leaves_every_byte_on_the_brick() {
    let (s, mut m) = SlowBrick::new("nb-wbfini");
    // 2 KiB writes: 32 pending fill the window, more than the 16 sent down at once.
    let (count, size) = (96usize, 2usize << 10);
    let want = expected_chunks(count, size);
    let (mut child, mut stdin, _lines, _times) = timed_writes(&m.mnt.join("f"), count, size);
    let on_brick = std::fs::metadata(s.brick.join("f"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        on_brick < want.len() as u64,
        "nothing was pending behind when the mount was stopped ({on_brick} bytes on the brick already)"
    );
    let t = Instant::now();
    let st = m.stop_with(libc::SIGTERM);
    let took = t.elapsed();
    let log = m.log_text();
    eprintln!(
        "{on_brick} of {} bytes on the brick at SIGTERM; the mount exited ({st}) after {took:?}",
        want.len()
    );
    let got = std::fs::read(s.brick.join("f")).unwrap();
    assert_eq!(
        got.len(),
        want.len(),
        "{} of {} bytes on the brick after the mount exited ({st})\n{log}",
        got.len(),
        want.len()
    );
    assert!(got == want, "the brick file is not what was written\n{log}");
    assert!(st.success(), "the mount exited with {st}\n{log}");
    writeln!(stdin, "leave").unwrap();
    let _ = child.wait();
    drop(s);
}

// ---------------------------------------------------------------------------------------
// 6. statfs

/// statvfs of `p`.
fn statvfs(p: &Path) -> libc::statvfs {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string and a zeroed struct for the kernel to fill.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    assert_eq!(
        r,
        0,
        "statvfs {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    s
}

/// Compares statvfs of `mnt` with that of `brick`: sizes and totals equal, free counts
/// between two readings of the brick taken around the mount's (they move while other
/// processes write), 1 MiB of slack; tried 5 times before failing.
fn same_statvfs(mnt: &Path, brick: &Path) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..5 {
        let b1 = statvfs(brick);
        let v = statvfs(mnt);
        let b2 = statvfs(brick);
        let mut bad = Vec::new();
        for (name, got, want) in [
            ("f_bsize", v.f_bsize, b1.f_bsize),
            ("f_frsize", v.f_frsize, b1.f_frsize),
            ("f_blocks", v.f_blocks, b1.f_blocks),
            ("f_files", v.f_files, b1.f_files),
            ("f_namemax", v.f_namemax, b1.f_namemax),
        ] {
            if got != want {
                bad.push(format!("{name}: mount {got}, brick {want}"));
            }
        }
        let slack_blocks = (1u64 << 20) / b1.f_frsize.max(1);
        for (name, got, w1, w2, slack) in [
            ("f_bfree", v.f_bfree, b1.f_bfree, b2.f_bfree, slack_blocks),
            (
                "f_bavail",
                v.f_bavail,
                b1.f_bavail,
                b2.f_bavail,
                slack_blocks,
            ),
            ("f_ffree", v.f_ffree, b1.f_ffree, b2.f_ffree, 16),
        ] {
            let (lo, hi) = (w1.min(w2).saturating_sub(slack), w1.max(w2) + slack);
            if !(lo..=hi).contains(&got) {
                bad.push(format!("{name}: mount {got}, brick {w1} then {w2}"));
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        last = bad.join("; ");
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

/// `df` and statvfs(2) of a network mount give the brick filesystem's statvfs: on the
/// scratch filesystem (where free and available blocks differ) and on a tmpfs of a known
/// size and inode count.
#[test]
fn statfs_of_a_network_mount_is_the_brick_filesystems() {
    let dir = scratch("nb-statfs");
    let disk = dir.path().join("disk-brick");
    std::fs::create_dir(&disk).unwrap();
    let small = Tmpfs::new(
        &dir.path().join("tmpfs"),
        "size=40m,nr_inodes=4321,mode=0755",
    );
    let tiny = small.0.join("brick");
    std::fs::create_dir(&tiny).unwrap();
    std::fs::write(tiny.join("some"), vec![7u8; 3 << 20]).unwrap();
    let vf = dir.path().join("server.vol");
    let mut text = brick_graph("disk", &disk, &[]);
    text.push_str(&brick_graph("tiny", &tiny, &[]));
    std::fs::write(&vf, text).unwrap();
    let bd = Brickd::start(dir.path(), &vf, &[]);
    let md = mount_text(dir.path(), "disk", &client_volfile("disk", bd.port, &[]));
    let mt = mount_text(dir.path(), "tiny", &client_volfile("tiny", bd.port, &[]));

    same_statvfs(&md.mnt, &disk).unwrap_or_else(|e| panic!("disk brick: {e}"));
    same_statvfs(&mt.mnt, &tiny).unwrap_or_else(|e| panic!("tmpfs brick: {e}"));
    let v = statvfs(&mt.mnt);
    assert_eq!(
        v.f_blocks * v.f_frsize,
        40 << 20,
        "tmpfs size through the mount"
    );
    assert_eq!(v.f_files, 4321, "tmpfs inodes through the mount");
    assert!(
        v.f_bfree * v.f_frsize <= (37 << 20),
        "3 MiB used on the tmpfs"
    );

    // df says the same.
    let df = |p: &Path| {
        let out = Command::new("df")
            .args(["-B1", "--output=size,used,itotal"])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (dm, db) = (df(&mt.mnt), df(&tiny));
    assert_eq!(dm, db, "df of the mount and of the tmpfs brick");
    assert_eq!(dm.first().map(String::as_str), Some("41943040"));
    drop((md, mt));
    drop(bd);
    drop(small);
}
