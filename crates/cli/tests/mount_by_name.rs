//! `weft mount HOST[:PORT]:/VOLUME`: the client volfile fetched from a management daemon's
//! HTTP API (here a small real HTTP server in the test, speaking the mgmtd contract), the
//! backup servers, the server's refusal, and live updates of a mounted volume (options
//! reconfigured in place, a new graph switched to) while a writer keeps writing.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The volumes a [`VolfileHttp`] serves: name -> (version, client volfile).
struct Shared {
    vols: Mutex<HashMap<String, (u64, String)>>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Requests answered, for checks that a server was (or was not) asked.
    requests: AtomicU64,
}

/// A real HTTP server on 127.0.0.1 (port 0: a free one) answering
/// `GET /v1/volumes/{VOL}/volfile[?after=V&wait=S]` as mgmtd does. Stops on drop.
struct VolfileHttp {
    port: u16,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

async fn volfile_handler(
    axum::extract::State(s): axum::extract::State<Arc<Shared>>,
    axum::extract::Path(vol): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    s.requests.fetch_add(1, Ordering::Relaxed);
    let after: Option<u64> = q.get("after").and_then(|v| v.parse().ok());
    let wait: u64 = q
        .get("wait")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(60);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // Subscribed before looking, so a change made meanwhile is not missed.
    let mut rx = s.changed.subscribe();
    loop {
        let now = s.vols.lock().unwrap().get(&vol).cloned();
        match now {
            None => {
                return (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(
                        serde_json::json!({"error": format!("volume {vol} does not exist")}),
                    ),
                )
                    .into_response()
            }
            Some((v, text)) if after.is_none_or(|a| v > a) => {
                return axum::Json(
                    serde_json::json!({"volume": vol, "version": v, "volfile": text}),
                )
                .into_response()
            }
            Some(_) => {}
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return axum::http::StatusCode::NO_CONTENT.into_response();
        }
    }
}

impl VolfileHttp {
    fn start() -> VolfileHttp {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            vols: Mutex::new(HashMap::new()),
            changed: tokio::sync::watch::channel(0).0,
            requests: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route(
                "/v1/volumes/{vol}/volfile",
                axum::routing::get(volfile_handler),
            )
            .with_state(shared.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(async move { axum::serve(listener, app).await });
        VolfileHttp {
            port,
            shared,
            rt: Some(rt),
        }
    }

    /// Publishes a new version of `vol`'s volfile; returns the version.
    fn publish(&self, vol: &str, volfile: &str) -> u64 {
        let v = {
            let mut m = self.shared.vols.lock().unwrap();
            let v = m.get(vol).map_or(1, |(v, _)| v + 1);
            m.insert(vol.to_string(), (v, volfile.to_string()));
            v
        };
        self.shared.changed.send_modify(|n| *n += 1);
        v
    }

    fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

impl Drop for VolfileHttp {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A port nothing listens on (bound, then closed).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The client volfile the management daemon would generate: protocol/client to brick
/// `vol0` at `port`, under write-behind with `wb` options, topped by io-stats when
/// `stats` (a change of the graph's shape).
fn client_vf(port: u16, wb: &[(&str, &str)], stats: bool) -> String {
    let mut v = client_volfile("vol0", port, &[("ping-timeout", "10")]);
    let opts: String = wb
        .iter()
        .map(|(k, val)| format!("    option {k} {val}\n"))
        .collect();
    v.push_str(&format!(
        "\nvolume vol0-wb\n    type performance/write-behind\n{opts}    subvolumes vol0-client\nend-volume\n"
    ));
    if stats {
        v.push_str(
            "\nvolume vol0-stats\n    type debug/io-stats\n    subvolumes vol0-wb\nend-volume\n",
        );
    }
    v
}

/// A brick served by brickd, a volfile server publishing volume `vol0` for it, and a
/// directory for mountpoints and logs.
struct Setup {
    http: VolfileHttp,
    brickd: Brickd,
    brick: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    /// The plain graphs: posix < locks on the brick, write-behind on the client.
    fn new(tag: &str) -> Setup {
        Setup::with(
            tag,
            |brick| brick_graph("vol0", brick, &[]),
            |port| client_vf(port, &[], false),
        )
    }

    /// The brick graph `brick_vf` makes for the brick directory, and the client volfile
    /// `client` makes for brickd's port.
    fn with(
        tag: &str,
        brick_vf: impl Fn(&Path) -> String,
        client: impl Fn(u16) -> String,
    ) -> Setup {
        let dir = scratch(tag);
        let brick = dir.path().join("brick");
        std::fs::create_dir(&brick).unwrap();
        let sv = dir.path().join("server.vol");
        std::fs::write(&sv, brick_vf(&brick)).unwrap();
        let brickd = Brickd::start(dir.path(), &sv, &[]);
        let http = VolfileHttp::start();
        http.publish("vol0", &client(brickd.port));
        Setup {
            http,
            brickd,
            brick,
            dir,
        }
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        let m = self.dir.path().join(name);
        std::fs::create_dir(&m).unwrap();
        m
    }

    fn mount(&self, name: &str, extra: &[&str]) -> MountGuard {
        let mnt = self.mountpoint(name);
        let spec = format!("127.0.0.1:{}:/vol0", self.http.port);
        let mut args: Vec<&OsStr> = vec![OsStr::new(&spec), mnt.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        mount_args(&args, &mnt, &self.dir.path().join(format!("{name}.log")))
    }
}

fn statedump(mnt: &Path) -> String {
    String::from_utf8(getxattr(mnt, "weft.statedump").expect("statedump")).unwrap()
}

/// Waits up to 15 s for mount `m` to log `line` (it logs a graph change just after the
/// change is in effect), failing with its log otherwise.
fn logs_eventually(m: &MountGuard, line: &str) {
    assert!(
        eventually(|| m.log_text().contains(line)),
        "no {line:?} in:\n{}",
        m.log_text()
    );
}

/// Waits up to 15 s for `cond`, and says whether it came true.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !cond() {
        if t.elapsed() > Duration::from_secs(15) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    true
}

#[test]
fn mounts_by_volume_name_and_shows_host_and_volume_as_its_source() {
    let s = Setup::new("byname");
    let m = s.mount("m", &[]);
    std::fs::write(m.mnt.join("hello"), b"from a mount by name").unwrap();
    assert_eq!(
        std::fs::read(s.brick.join("hello")).unwrap(),
        b"from a mount by name"
    );
    assert!(m.log_text().contains(&format!(
        "mounted 127.0.0.1:{}:/vol0 (version 1)",
        s.http.port
    )));
    let out = std::process::Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,SOURCE", "--mountpoint"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let cols: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(cols, ["fuse.weft", "127.0.0.1:/vol0"], "findmnt: {text:?}");
    let df = std::process::Command::new("df")
        .arg("-T")
        .arg(&m.mnt)
        .output()
        .unwrap();
    let df = String::from_utf8_lossy(&df.stdout);
    assert!(
        df.contains("127.0.0.1:/vol0") && df.contains("fuse.weft"),
        "{df}"
    );
}

#[test]
fn an_unknown_volume_is_refused_with_the_servers_words() {
    let s = Setup::new("byname-unknown");
    let mnt = s.mountpoint("m");
    let out = weft_output(&[
        "mount",
        &format!("127.0.0.1:{}:/nosuchvol", s.http.port),
        mnt.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot fetch the volfile of volume nosuchvol")
            && err.contains("volume nosuchvol does not exist"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
    // A spec that is not HOST:/VOLUME says what it should be.
    let out = weft_output(&["mount", "127.0.0.1", mnt.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST[:PORT]:/VOLUME"));
}

#[test]
fn no_server_answering_is_reported_per_server() {
    let dir = scratch("byname-down");
    let (a, b) = (dead_port(), dead_port());
    let out = weft_output(&[
        "mount",
        &format!("127.0.0.1:{a}:/vol0"),
        dir.path().to_str().unwrap(),
        "--backup-volfile-servers",
        &format!("127.0.0.1:{b}"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no volfile server answered: 127.0.0.1:{a}: connection refused; 127.0.0.1:{b}: connection refused"
        )),
        "{err}"
    );
}

#[test]
fn a_backup_server_is_used_when_the_first_is_down_also_for_updates() {
    let s = Setup::new("byname-backup");
    let down = dead_port();
    let mnt = s.mountpoint("m");
    let spec = format!("127.0.0.1:{down}:/vol0");
    let backups = format!("127.0.0.1:{},127.0.0.1:{}", dead_port(), s.http.port);
    let m = mount_args(
        &[
            OsStr::new(&spec),
            mnt.as_os_str(),
            OsStr::new("--backup-volfile-servers"),
            OsStr::new(&backups),
        ],
        &mnt,
        &s.dir.path().join("m.log"),
    );
    std::fs::write(m.mnt.join("f"), b"via the backup").unwrap();
    assert_eq!(std::fs::read(s.brick.join("f")).unwrap(), b"via the backup");
    // The source names the server given first, as GlusterFS shows it.
    let out = std::process::Command::new("findmnt")
        .args(["-n", "-o", "SOURCE", "--mountpoint"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "127.0.0.1:/vol0"
    );
    // Updates come through the backup too.
    s.http.publish(
        "vol0",
        &client_vf(s.brickd.port, &[("cache-size", "256KB")], false),
    );
    assert!(
        eventually(|| statedump(&m.mnt).contains("cache-size=262144")),
        "{}\n{}",
        statedump(&m.mnt),
        m.log_text()
    );
    // The graph takes the option before the mount logs it: wait for the line too.
    logs_eventually(
        &m,
        "volume vol0 version 2: reconfigured vol0-wb (cache-size)",
    );
}

/// The bytes of chunk `i` of the writer's stream: a pseudo-random pattern of its own.
fn chunk(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a 64 of `data`.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

const CHUNK: usize = 64 * 1024;

/// Writes chunks to `path` (one open file) until `stop` and at least `min` chunks, counting
/// them in `done`; fsyncs and closes. Returns the number of chunks written.
fn writer(path: PathBuf, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> u64 {
    let mut f = std::fs::File::create(&path).unwrap();
    let mut i = 0u64;
    while !stop.load(Ordering::Acquire) || i < 16 {
        f.write_all(&chunk(i, CHUNK)).unwrap();
        i += 1;
        done.store(i, Ordering::Release);
        if i > 20_000 {
            break;
        }
    }
    f.sync_all().unwrap();
    drop(f);
    i
}

/// Checks that `path` holds exactly chunks 0..n, by checksum (and says where it differs).
fn check_stream(path: &Path, n: u64) {
    let mut got = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    let want: Vec<u8> = (0..n).flat_map(|i| chunk(i, CHUNK)).collect();
    if fnv(&got) != fnv(&want) {
        let at = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "{}: {} bytes, want {}; first difference at {at:?}",
            path.display(),
            got.len(),
            want.len()
        );
    }
}

/// Waits until the writer has written `more` chunks past what it had.
fn progress(done: &AtomicU64, more: u64) {
    let from = done.load(Ordering::Acquire);
    assert!(
        eventually(|| done.load(Ordering::Acquire) >= from + more),
        "the writer stalled at chunk {}",
        done.load(Ordering::Acquire)
    );
}

#[test]
fn write_behind_off_and_on_reach_the_mount_live_while_a_writer_writes() {
    let s = Setup::new("byname-live");
    let m = s.mount("m", &[]);
    let pid = m.pid();
    assert!(statedump(&m.mnt).contains("enable=on"));
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let w = {
        let (p, stop, done) = (m.mnt.join("stream"), stop.clone(), done.clone());
        std::thread::spawn(move || writer(p, stop, done))
    };
    progress(&done, 8);
    // Off: the mount reconfigures write-behind in place; the writer goes on.
    let v2 = s.http.publish(
        "vol0",
        &client_vf(s.brickd.port, &[("enable", "off")], false),
    );
    assert!(
        eventually(|| statedump(&m.mnt).contains("enable=off")),
        "{}",
        m.log_text()
    );
    logs_eventually(
        &m,
        &format!("volume vol0 version {v2}: reconfigured vol0-wb (enable)"),
    );
    progress(&done, 8);
    // On again, with another window.
    let v3 = s.http.publish(
        "vol0",
        &client_vf(
            s.brickd.port,
            &[("enable", "on"), ("cache-size", "128KB")],
            false,
        ),
    );
    assert!(
        eventually(|| {
            let d = statedump(&m.mnt);
            d.contains("enable=on") && d.contains("cache-size=131072")
        }),
        "{}",
        m.log_text()
    );
    logs_eventually(
        &m,
        &format!("volume vol0 version {v3}: reconfigured vol0-wb (cache-size, enable)"),
    );
    progress(&done, 8);
    stop.store(true, Ordering::Release);
    let n = w.join().expect("the writer never failed");
    // Every byte arrived, in place, on the brick and through the mount.
    check_stream(&s.brick.join("stream"), n);
    check_stream(&m.mnt.join("stream"), n);
    // Same process, same mount, same graph: nothing was remounted or rebuilt.
    assert_eq!(m.pid(), pid);
    assert!(is_mounted(&m.mnt));
    let log = m.log_text();
    assert!(!log.contains("new graph"), "{log}");
    assert!(!log.contains("unmount"), "{log}");
}

/// The caching client graph (entry-behind, write-behind, read-ahead, quick-read,
/// md-cache: directories the mount makes are leased and files made in them go behind),
/// with io-stats on top when `stats` (another shape: a new graph).
fn caching_vf(port: u16, stats: bool) -> String {
    let mut v = caching_client_volfile("vol0", port, true);
    if stats {
        v.push_str(
            "\nvolume vol0-stats\n    type debug/io-stats\n    subvolumes vol0-md-cache\nend-volume\n",
        );
    }
    v
}

/// Files made behind in a leased directory and kept open move to each new graph with what
/// they hold: a writer appends to one and rewrites its first bytes (a counter) all along,
/// through two graph switches; the brick ends with every chunk in order and the last
/// counter, so no write of an old graph landed after the new graph's.
#[test]
fn files_made_behind_move_to_a_new_graph_with_their_writes() {
    use std::os::unix::fs::FileExt;
    let s = Setup::with(
        "byname-behind-switch",
        |brick| caching_brick_graph("vol0", brick),
        |port| caching_vf(port, false),
    );
    let m = s.mount("m", &[]);
    let mnt = m.mnt.clone();
    std::fs::create_dir(mnt.join("d")).unwrap();
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    // Chunks from offset 8 on; the first 8 bytes count them, rewritten after each.
    let w = {
        let (p, stop, done) = (mnt.join("d/stream"), stop.clone(), done.clone());
        std::thread::spawn(move || {
            let f = std::fs::File::create(&p).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) || i < 16 {
                f.write_all_at(&chunk(i, CHUNK), 8 + i * CHUNK as u64)
                    .unwrap();
                i += 1;
                f.write_all_at(&i.to_be_bytes(), 0).unwrap();
                done.store(i, Ordering::Release);
                if i > 20_000 {
                    break;
                }
            }
            f.sync_all().unwrap();
            i
        })
    };
    progress(&done, 8);
    let leased = statedump(&m.mnt);
    assert!(leased.contains("leased_dirs = 1"), "{leased}");
    for (k, stats) in [(2, true), (3, false)] {
        s.http.publish("vol0", &caching_vf(s.brickd.port, stats));
        logs_eventually(&m, &format!("1 open file(s) moved to graph {k}"));
        progress(&done, 8);
    }
    stop.store(true, Ordering::Release);
    let n = w.join().expect("the writer never failed");
    let got = std::fs::read(s.brick.join("d/stream")).unwrap();
    assert_eq!(got.len() as u64, 8 + n * CHUNK as u64);
    assert_eq!(u64::from_be_bytes(got[..8].try_into().unwrap()), n);
    let want: Vec<u8> = (0..n).flat_map(|i| chunk(i, CHUNK)).collect();
    assert!(
        fnv(&got[8..]) == fnv(&want),
        "the chunks differ on the brick"
    );
}

#[test]
fn a_new_graph_takes_over_open_files_except_locked_ones() {
    let s = Setup::new("byname-switch");
    let m = s.mount("m", &[]);
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let w = {
        let (p, stop, done) = (m.mnt.join("stream"), stop.clone(), done.clone());
        std::thread::spawn(move || writer(p, stop, done))
    };
    progress(&done, 8);
    // A file holding a lock: it stays on the graph it was opened on (its lock lives in
    // that graph's connection); the writer's file moves to the new graph.
    let locked = std::fs::File::create(m.mnt.join("locked")).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(locked.as_raw_fd(), libc::LOCK_EX) }, 0);
    // io-stats on top: another shape, so a new graph.
    let v2 = s.http.publish("vol0", &client_vf(s.brickd.port, &[], true));
    assert!(
        eventually(|| statedump(&m.mnt).contains("current = 2")),
        "{}",
        m.log_text()
    );
    // The mount logs the switch once it returns, just after the statedump shows it.
    logs_eventually(
        &m,
        &format!("volume vol0 version {v2}: now serving graph 2"),
    );
    let dump = statedump(&m.mnt);
    assert!(dump.contains("older, kept for open files = [1]"), "{dump}");
    logs_eventually(&m, "1 open file(s) moved to graph 2");
    assert!(dump.contains("[vol0-stats]"), "{dump}");
    // New files go through the new graph (io-stats counts them); the old file goes on.
    std::fs::write(m.mnt.join("new"), b"through graph 2").unwrap();
    assert_eq!(
        std::fs::read(s.brick.join("new")).unwrap(),
        b"through graph 2"
    );
    assert!(eventually(|| statedump(&m.mnt).contains("create ")));
    progress(&done, 8);
    stop.store(true, Ordering::Release);
    let n = w.join().expect("the writer never failed");
    check_stream(&s.brick.join("stream"), n);
    check_stream(&m.mnt.join("stream"), n);
    // The lock still holds through the old graph: another open file description of the
    // mount cannot take it.
    let other = std::fs::File::open(m.mnt.join("locked")).unwrap();
    assert_ne!(
        unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    drop(other);
    assert!(statedump(&m.mnt).contains("older, kept for open files = [1]"));
    drop(locked);
    // Its last file released, the old graph is torn down.
    logs_eventually(&m, "graph 1: no file uses it any more; torn down");
    assert!(!statedump(&m.mnt).contains("older"));
    // And the volume server's version stream went on: a later option change applies to
    // the new graph in place.
    s.http.publish(
        "vol0",
        &client_vf(s.brickd.port, &[("enable", "off")], true),
    );
    assert!(
        eventually(|| statedump(&m.mnt).contains("enable=off")),
        "{}",
        m.log_text()
    );
    assert!(s.http.requests() >= 3);
}

/// Unmounts a detached mount on drop (its process then exits by itself).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
        if is_mounted(&self.0) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

fn mount_helper() -> std::process::Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mount.weft");
    let mut c = std::process::Command::new(script);
    c.env("WEFT", env!("CARGO_BIN_EXE_weft"))
        .stdin(std::process::Stdio::null());
    c
}

#[test]
fn the_mount_helper_maps_mount_options_and_mounts() {
    let s = Setup::new("byname-helper");
    let mnt = s.mountpoint("m");
    let log = s.dir.path().join("helper-mount.log");
    // What mount(8) runs for
    //   127.0.0.1:DEAD:/vol0 MNT weft defaults,_netdev,backup-volfile-servers=...,log-level=DEBUG,log-file=...
    // The first server is down; the backups are written GlusterFS's way (colons, a port
    // after its host).
    let (d1, d2) = (dead_port(), dead_port());
    let opts = format!(
        "defaults,_netdev,backup-volfile-servers=127.0.0.1:{d2}:127.0.0.1:{},log-level=DEBUG,log-file={},noatime,x-systemd.automount",
        s.http.port,
        log.display()
    );
    let spec = format!("127.0.0.1:{d1}:/vol0");
    // -f (fake) with -v: says what it would run and mounts nothing.
    let out = mount_helper()
        .arg(&spec)
        .arg(&mnt)
        .args(["-f", "-v", "-o", &opts])
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "mount --log-level debug --log-file {} {spec} {} --backup-volfile-servers 127.0.0.1:{d2},127.0.0.1:{}",
            log.display(),
            mnt.display(),
            s.http.port
        )),
        "{said}"
    );
    assert!(!is_mounted(&mnt));
    // For real.
    let out = mount_helper()
        .arg(&spec)
        .arg(&mnt)
        .args(["-o", &opts])
        .output()
        .unwrap();
    let _unmount = Unmount(mnt.clone());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(is_mounted(&mnt));
    std::fs::write(mnt.join("f"), b"helper").unwrap();
    assert_eq!(std::fs::read(s.brick.join("f")).unwrap(), b"helper");
    let out = std::process::Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,SOURCE", "--mountpoint"])
        .arg(&mnt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["fuse.weft", "127.0.0.1:/vol0"]
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("DEBUG"),
        "log-level reached the mount: {text}"
    );
    // A failing mount fails the helper with mount(8)'s failure code, the reason on stderr.
    let other = s.mountpoint("m2");
    let out = mount_helper()
        .arg(format!("127.0.0.1:{}:/nosuchvol", s.http.port))
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(32));
    assert!(String::from_utf8_lossy(&out.stderr).contains("volume nosuchvol does not exist"));
}

/// An appender's records stay in order while the graph is switched under it again and
/// again (its open file moves to each new graph; the old graph's pending writes go out
/// before the new graph's).
#[test]
fn appends_keep_their_order_across_graph_switches() {
    let s = Setup::new("byname-appends");
    let m = s.mount("m", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let rec = |n: u64| format!("record {n:08}\n");
    let w = {
        let (p, stop, done) = (m.mnt.join("log"), stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                f.write_all(rec(n).as_bytes()).unwrap();
                n += 1;
                done.store(n, Ordering::Release);
            }
            f.sync_all().unwrap();
            n
        })
    };
    progress(&done, 50);
    for k in 0..6u64 {
        s.http
            .publish("vol0", &client_vf(s.brickd.port, &[], k % 2 == 0));
        let want = format!("current = {}", k + 2);
        assert!(
            eventually(|| statedump(&m.mnt).contains(&want)),
            "{}",
            m.log_text()
        );
        progress(&done, 50);
    }
    stop.store(true, Ordering::Release);
    let n = w.join().expect("the appender never failed");
    let want: String = (0..n).map(rec).collect();
    let got = std::fs::read_to_string(m.mnt.join("log")).unwrap();
    if got != want {
        let at = got.bytes().zip(want.bytes()).position(|(a, b)| a != b);
        panic!(
            "{} bytes, the model {}; first difference at {at:?}: {:?}",
            got.len(),
            want.len(),
            at.map(|a| &got[a.saturating_sub(30)..(a + 30).min(got.len())])
        );
    }
    assert!(
        m.log_text().contains("open file(s) moved to graph 7"),
        "{}",
        m.log_text()
    );
}
