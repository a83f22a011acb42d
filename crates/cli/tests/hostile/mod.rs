//! Tools for tests that attack a real `weft brickd`: a brickd started with resource limits
//! or a umask of the test's choosing (killed on drop), a raw wire client that can connect
//! from any 127.0.0.x address, a second well-behaved client measuring stat latency, and the
//! server's memory from /proc.

#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_core::{Ctx, Gfid, Loc, Xdata};
use weft_wire::msg::{self, FopRequest, Handshake, HandshakeReply, Reply, Request, Response};
use weft_wire::{Frame, Header, Kind, HEADER_LEN};

use crate::common::{brick_graph, scratch, weft_dying_with};

/// How a [`Daemon`] is started.
#[derive(Default, Clone)]
pub struct Spawn {
    /// Extra `weft brickd` arguments (limits).
    pub args: Vec<String>,
    /// RLIMIT_NOFILE (soft and hard) to start it with.
    pub nofile: Option<u64>,
    /// The umask to start it with.
    pub umask: Option<u32>,
    /// `--control` (default: `brickd.sock` in the folder).
    pub control: Option<PathBuf>,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
}

/// A `weft brickd` serving one brick `b` (posix < locks < protocol/server) from a scratch
/// folder on 127.0.0.1; SIGKILLed on drop, and if the test process dies.
pub struct Daemon {
    child: Option<Child>,
    /// Holds the brick, the volfile, the log.
    pub dir: tempfile::TempDir,
    /// The brick directory.
    pub brick: PathBuf,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The control socket.
    pub control: PathBuf,
    /// The log file (brickd's stderr).
    pub log: PathBuf,
}

/// The brick every [`Daemon`] serves.
pub const BRICK: &str = "b";

impl Daemon {
    /// Starts brickd as `how` says.
    pub fn start(tag: &str, how: Spawn) -> Daemon {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        std::fs::create_dir(&brick).unwrap();
        Daemon::start_in(dir, brick, how)
    }

    /// Starts brickd in `dir` serving `brick`, which the caller may have filled.
    pub fn start_in(dir: tempfile::TempDir, brick: PathBuf, how: Spawn) -> Daemon {
        use std::os::unix::process::CommandExt;
        let vf = dir.path().join("server.vol");
        std::fs::write(&vf, brick_graph(BRICK, &brick, &[])).unwrap();
        let control = how
            .control
            .clone()
            .unwrap_or_else(|| dir.path().join("brickd.sock"));
        let log = dir.path().join("brickd.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = weft_dying_with(libc::SIGKILL);
        cmd.arg("brickd")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--control")
            .arg(&control)
            .arg("--volfile")
            .arg(&vf)
            .args(&how.args);
        if let Some(p) = &how.pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        let (nofile, umask) = (how.nofile, how.umask);
        // SAFETY: setrlimit and umask are async-signal-safe and touch no parent memory.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(n) = nofile {
                    let r = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(m) = umask {
                    libc::umask(m);
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .expect("spawn weft brickd");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let mut d = Daemon {
            child: Some(child),
            dir,
            brick,
            port: 0,
            control,
            log,
        };
        assert!(
            line.contains("listening on"),
            "brickd did not start: {line:?}\n{}",
            d.log_text()
        );
        let addr = line
            .split_whitespace()
            .nth(4)
            .unwrap()
            .trim_end_matches(',');
        d.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        d
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `VmRSS` and `VmHWM` (peak) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Descriptors it has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits up to `within` for its log to contain `what`.
    pub fn wait_log(&self, what: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.log_text().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit; returns it.
pub fn raise_own_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}

/// A TCP connection to 127.0.0.1:`port` from address `from` (any 127.0.0.x works on
/// loopback), so that tests can play many hosts.
pub fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    fn sa(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr structs
    // live across the calls. The descriptor goes to a TcpStream (or is closed) on return.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let src = sa(from, 0);
        if libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let dst = sa(Ipv4Addr::LOCALHOST, port);
        if libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s)
    }
}

/// The next frame from `s`.
pub fn recv(s: &mut TcpStream) -> std::io::Result<Frame> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h)?;
    let header = Header::parse(&h)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut meta = vec![0; header.meta_len as usize];
    s.read_exact(&mut meta)?;
    let mut data = vec![0; header.data_len as usize];
    s.read_exact(&mut data)?;
    Ok(Frame {
        header,
        meta: meta.into(),
        data: data.into(),
    })
}

/// A handshake frame for brick `brick`.
pub fn handshake_frame(brick: &str) -> Frame {
    let hs = Handshake {
        brick: brick.into(),
        client_name: "attacks-test".into(),
    };
    Frame::new(Kind::Handshake, 0, msg::encode(&hs), Bytes::new())
}

/// The server's answer to a handshake sent on `s`.
pub fn handshake_reply(s: &mut TcpStream) -> std::io::Result<HandshakeReply> {
    let f = recv(s)?;
    msg::decode(Kind::HandshakeReply, &f.meta)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// A request frame.
pub fn request(id: u64, fop: FopRequest) -> Frame {
    let req = Request {
        ctx: Ctx::internal(),
        xdata: Xdata::default(),
        fop,
    };
    Frame::new(Kind::Request, id, msg::encode(&req), Bytes::new())
}

/// A client that speaks the wire protocol by hand.
pub struct Peer {
    /// The connection.
    pub s: TcpStream,
    next: u64,
}

impl Peer {
    /// Connects from `from` and completes a handshake for [`BRICK`]; the refusal's reason
    /// otherwise.
    pub fn connect(from: Ipv4Addr, port: u16) -> Result<Peer, String> {
        let mut s = connect_from(from, port).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&handshake_frame(BRICK).encode())
            .map_err(|e| format!("send handshake: {e}"))?;
        match handshake_reply(&mut s).map_err(|e| format!("handshake reply: {e}"))? {
            HandshakeReply::Accepted { .. } => Ok(Peer { s, next: 1 }),
            HandshakeReply::Refused { reason, .. } => Err(reason),
        }
    }

    /// A fresh request id.
    pub fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Sends one request and waits for its reply (replies to other ids are skipped).
    pub fn call(&mut self, fop: FopRequest) -> Result<Reply, i32> {
        let id = self.id();
        self.s.write_all(&request(id, fop).encode()).unwrap();
        loop {
            let f = recv(&mut self.s).expect("a reply");
            if f.header.kind == Kind::Reply && f.header.id == id {
                let r: Response = msg::decode(Kind::Reply, &f.meta).unwrap();
                return r.result;
            }
        }
    }

    /// Looks `name` up in the brick's root; its gfid.
    pub fn lookup(&mut self, name: &str) -> Gfid {
        match self.call(FopRequest::Lookup {
            loc: Loc::entry(Gfid::ROOT, name),
        }) {
            Ok(Reply::Iatt(ia)) => ia.gfid,
            other => panic!("lookup {name}: {other:?}"),
        }
    }

    /// Opens `gfid` read-only; the server's fd number or the errno.
    pub fn open(&mut self, gfid: Gfid) -> Result<u64, i32> {
        match self.call(FopRequest::Open {
            loc: Loc::inode(gfid),
            gfid,
            flags: libc::O_RDONLY,
        }) {
            Ok(Reply::Opened { fd }) => Ok(fd),
            Ok(other) => panic!("open: {other:?}"),
            Err(e) => Err(e),
        }
    }

    /// Stats the brick root; panics unless it works.
    pub fn stat(&mut self) {
        match self.call(FopRequest::Stat { loc: Loc::root() }) {
            Ok(Reply::Iatt(_)) => {}
            other => panic!("stat: {other:?}"),
        }
    }
}

/// Latency figures of a series of stats.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// How many.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Stats {
    /// Figures of `v` (at least one sample).
    pub fn of(mut v: Vec<Duration>) -> Stats {
        assert!(!v.is_empty(), "no samples");
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stats {
            n: v.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: *v.last().unwrap(),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
            self.n,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// The witness's background thread: its stop flag and what it returns.
type Running = (
    Arc<AtomicBool>,
    std::thread::JoinHandle<(Peer, Vec<Duration>)>,
);

/// A well-behaved client on its own connection (from 127.0.0.1), statting the brick root.
pub struct Witness {
    peer: Option<Peer>,
    /// Its latency with nothing else going on.
    pub idle: Stats,
    running: Option<Running>,
}

impl Witness {
    /// Connects and measures idle latency over 300 stats.
    pub fn new(port: u16) -> Witness {
        let mut peer = Peer::connect(Ipv4Addr::LOCALHOST, port).expect("witness connects");
        for _ in 0..20 {
            peer.stat();
        }
        let idle = Stats::of(
            (0..300)
                .map(|_| {
                    let t = Instant::now();
                    peer.stat();
                    t.elapsed()
                })
                .collect(),
        );
        Witness {
            peer: Some(peer),
            idle,
            running: None,
        }
    }

    /// Starts statting in the background, one stat every 2 ms.
    pub fn start(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut peer = self.peer.take().expect("not running");
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            let mut v = Vec::new();
            while !st.load(Ordering::Relaxed) {
                let t = Instant::now();
                peer.stat();
                v.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(2));
            }
            (peer, v)
        });
        self.running = Some((stop, h));
    }

    /// Stops statting; the latency while it ran.
    pub fn stop(&mut self) -> Stats {
        let (stop, h) = self.running.take().expect("running");
        stop.store(true, Ordering::Relaxed);
        let (peer, v) = h.join().expect("the witness's stats failed");
        self.peer = Some(peer);
        Stats::of(v)
    }

    /// The most the latency during an attack may be: 10x idle, at least 200 ms (a loaded
    /// test machine is slow without any attack).
    pub fn allowed(&self) -> Duration {
        (self.idle.p90 * 10).max(Duration::from_millis(200))
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some((stop, h)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

/// Checks what every attack must leave true and prints the figures for
/// docs/BENCHMARKS.md (`scripts/bench/attacks.sh` collects the `attack-report:` lines):
/// brickd's peak RSS under `max_rss_mib`, the witness's p90 stat latency during the attack
/// within [`Witness::allowed`], and a new connection accepted and served.
pub fn verdict(name: &str, d: &Daemon, w: &Witness, busy: Stats, max_rss_mib: u64) {
    let (rss, hwm) = d.memory_kib();
    eprintln!(
        "attack-report: {name}: peak_rss={:.1}MiB rss_after={:.1}MiB idle[{}] attacked[{}]",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        w.idle,
        busy
    );
    assert!(
        hwm <= max_rss_mib * 1024,
        "{name}: brickd peaked at {hwm} KiB, over the {max_rss_mib} MiB bound"
    );
    assert!(
        busy.p90 <= w.allowed(),
        "{name}: stat latency during the attack {busy} is over {:?} (idle {})",
        w.allowed(),
        w.idle
    );
    let mut fresh = Peer::connect(Ipv4Addr::LOCALHOST, d.port).unwrap_or_else(|e| {
        panic!(
            "{name}: a new connection was refused: {e}\n{}",
            d.log_text()
        )
    });
    fresh.stat();
}

/// A folder for a brick with a 1 TiB sparse file `sparse` and a small file `f` in it.
pub fn brick_with_files(tag: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = scratch(tag);
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let f = std::fs::File::create(brick.join("sparse")).unwrap();
    f.set_len(1 << 40).unwrap();
    std::fs::write(brick.join("f"), b"hello").unwrap();
    (dir, brick)
}

/// Writes `batch` to `s` up to `batches` times, stopping when a write blocks for
/// `patience` (the server stopped reading); returns how many whole batches went out.
pub fn write_until_blocked(
    s: &mut TcpStream,
    batch: &[u8],
    batches: usize,
    patience: Duration,
) -> usize {
    s.set_write_timeout(Some(patience)).unwrap();
    let mut sent = 0;
    for _ in 0..batches {
        if s.write_all(batch).is_err() {
            break;
        }
        sent += 1;
    }
    sent
}

/// Mode bits (`st_mode & 0o7777`) of `p`, not following a symlink.
pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}
