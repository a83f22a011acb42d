//! Open files and locks across reconnects, in one process: a brick server (posix under
//! locks under protocol/server), protocol/client graphs, and a TCP proxy between one
//! client and the server that cuts connections and refuses new ones on demand.
//!
//! - a dropped connection within `grace-timeout`: same server fds (an unlinked file and a
//!   file replaced by rename stay readable and writable) and same locks (another client
//!   still gets EAGAIN); what was closed meanwhile is released once back;
//! - past the grace: locks released (a waiter elsewhere is granted), a lock taken again
//!   where possible, otherwise the owner's fds fail with EIO;
//! - a restarted brick: locks taken again, or lost to a conflicting lock granted meanwhile;
//! - a new client with the same name but another session id inherits nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_core::{
    Ctx, Errno, Event, Fd, FdRef, Flock, Gfid, Graph, LkCmd, Loc, LockType, Xdata, XlatorRef,
    GFID_REQ_KEY,
};
use weft_protocol::resume::{self, SessionId};
use weft_protocol::BrickServer;
use weft_wire::msg::{self, FopRequest, Handshake, Reply, Request, Response};
use weft_wire::{Frame, Kind};

fn registry() -> weft_core::Registry {
    let mut r = weft_xlators::registry();
    weft_protocol::register(&mut r);
    r
}

/// A brick server on a free port serving brick `b` of `dir` with `grace`.
async fn brick(dir: &std::path::Path, grace: &str) -> (Arc<BrickServer>, u16) {
    let server = BrickServer::new(registry(), None, Default::default());
    let vf = format!(
        "volume b-posix\n type storage/posix\n option directory {}\nend-volume\n\
         volume b\n type features/locks\n subvolumes b-posix\nend-volume\n\
         volume b-server\n type protocol/server\n option grace-timeout {grace}\n subvolumes b\nend-volume\n",
        dir.display()
    );
    server.attach(&vf).await.expect("attach");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(server.clone().serve(listener));
    (server, port)
}

/// A protocol/client graph reaching brick `b` on `port`, once it is up.
async fn client(port: u16) -> Graph {
    let cv = format!(
        "volume c\n type protocol/client\n option remote-host 127.0.0.1\n option remote-port {port}\n option remote-subvolume b\n option ping-timeout 2\nend-volume\n"
    );
    let graph = Graph::build(
        &weft_core::volfile::Volfile::parse(&cv).expect("volfile"),
        &registry(),
    )
    .expect("graph");
    let mut events = graph.take_events().expect("events");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, ev) = events.recv().await.expect("event");
            if let Event::ChildUp(_) = ev {
                break;
            }
        }
    })
    .await
    .expect("client up");
    graph
}

/// A TCP proxy to a port that can be changed, cut and closed.
struct Proxy {
    port: u16,
    target: Arc<Mutex<u16>>,
    open: Arc<Mutex<bool>>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn new(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Arc::new(Mutex::new(target));
        let open = Arc::new(Mutex::new(true));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (t, o, c) = (target.clone(), open.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                if !*o.lock() {
                    continue; // dropped: the client sees the connection closed
                }
                let to = *t.lock();
                c.lock().push(tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                }));
            }
        });
        Proxy {
            port,
            target,
            open,
            conns,
        }
    }

    /// Drops every connection through the proxy (both ends see them closed).
    fn cut(&self) {
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    /// Cuts, and refuses connections until [`Proxy::reopen`].
    fn close(&self) {
        *self.open.lock() = false;
        self.cut();
    }

    fn reopen(&self) {
        *self.open.lock() = true;
    }

    fn retarget(&self, port: u16) {
        *self.target.lock() = port;
    }
}

fn ctx(pid: u32) -> Ctx {
    Ctx {
        pid,
        ..Ctx::internal()
    }
}

async fn create(top: &XlatorRef, pid: u32, name: &str, data: &[u8]) -> FdRef {
    let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
    top.create(&ctx(pid), &Loc::entry(Gfid::ROOT, name), &fd, 0o644, 0, xd)
        .await
        .expect("create");
    top.writev(
        &ctx(pid),
        &fd,
        Bytes::copy_from_slice(data),
        0,
        Xdata::new(),
    )
    .await
    .expect("write");
    fd
}

async fn open(top: &XlatorRef, pid: u32, name: &str) -> FdRef {
    let (iatt, _) = top
        .lookup(&ctx(pid), &Loc::entry(Gfid::ROOT, name), Xdata::new())
        .await
        .expect("lookup");
    let fd = Fd::new(iatt.gfid, libc::O_RDWR, false);
    top.open(&ctx(pid), &Loc::inode(iatt.gfid), &fd, Xdata::new())
        .await
        .expect("open");
    fd
}

fn wlock(owner: u64, pid: u32) -> Flock {
    Flock {
        kind: LockType::Write,
        start: 0,
        len: 0,
        pid,
        owner,
    }
}

async fn lock(top: &XlatorRef, fd: &FdRef, owner: u64, pid: u32) -> Result<(), Errno> {
    top.lk(&ctx(pid), fd, LkCmd::Set, &wlock(owner, pid), Xdata::new())
        .await
        .map(|_| ())
}

async fn read(top: &XlatorRef, fd: &FdRef) -> Result<Vec<u8>, Errno> {
    top.readv(&ctx(1), fd, 100, 0, Xdata::new())
        .await
        .map(|(b, _)| b.to_vec())
}

async fn write(top: &XlatorRef, fd: &FdRef, data: &[u8]) -> Result<(), Errno> {
    top.writev(&ctx(1), fd, Bytes::copy_from_slice(data), 0, Xdata::new())
        .await
        .map(|_| ())
}

/// Waits until `top` answers a stat of the root (it reconnected).
async fn wait_up(top: &XlatorRef) {
    let start = Instant::now();
    while top
        .stat(&Ctx::internal(), &Loc::root(), Xdata::new())
        .await
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(15), "no reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_has_parked(server: &BrickServer) -> bool {
    server.status().contains("parked=")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_keeps_open_files_and_locks_within_the_grace() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let (server, port) = brick(dir.path(), "10").await;
    let proxy = Proxy::new(port).await;
    let (ga, gb) = (client(proxy.port).await, client(port).await);
    let (a, b) = (ga.top().clone(), gb.top().clone());

    let lockf = create(&a, 100, "lockf", b"L").await;
    lock(&a, &lockf, 7, 100).await.unwrap();
    // An unlinked-open file and a file replaced by rename.
    let data = create(&a, 100, "data", b"precious data").await;
    a.unlink(&ctx(100), &Loc::entry(Gfid::ROOT, "data"), Xdata::new())
        .await
        .unwrap();
    let old = create(&a, 100, "old", b"old contents").await;
    let _new = create(&b, 200, "new", b"new contents").await;
    b.rename(
        &ctx(200),
        &Loc::entry(Gfid::ROOT, "new"),
        &Loc::entry(Gfid::ROOT, "old"),
        0,
        Xdata::new(),
    )
    .await
    .unwrap();
    // A lock whose fd is closed while the connection is down.
    let closed = create(&a, 100, "closed", b"C").await;
    lock(&a, &closed, 8, 100).await.unwrap();
    let b_lockf = open(&b, 200, "lockf").await;
    let b_closed = open(&b, 200, "closed").await;

    // Dropped and kept down for a moment: the brick keeps everything.
    proxy.close();
    let start = Instant::now();
    while !status_has_parked(&server) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            server.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.statedump().contains("parked client="));
    assert_eq!(lock(&b, &b_lockf, 9, 200).await, Err(Errno::EAGAIN));
    assert_eq!(read(&a, &data).await, Err(Errno::ENOTCONN));
    a.release(&ctx(100), &closed, Xdata::new()).await.unwrap();
    assert_eq!(lock(&b, &b_closed, 9, 200).await, Err(Errno::EAGAIN));
    proxy.reopen();
    wait_up(&a).await;
    assert!(!status_has_parked(&server), "{}", server.status());
    assert!(a.dump().contains("last_connect=resumed"), "{}", a.dump());

    // Same server fds: the unlinked file and the replaced one are still there.
    assert_eq!(read(&a, &data).await.unwrap(), b"precious data");
    write(&a, &data, b"PRECIOUS").await.unwrap();
    assert_eq!(read(&a, &data).await.unwrap(), b"PRECIOUS data");
    assert_eq!(read(&a, &old).await.unwrap(), b"old contents");
    write(&a, &old, b"OLD").await.unwrap();
    assert_eq!(read(&a, &old).await.unwrap(), b"OLD contents");
    // Same locks; the lock whose fd was closed meanwhile is gone.
    assert_eq!(lock(&b, &b_lockf, 9, 200).await, Err(Errno::EAGAIN));
    write(&a, &lockf, b"M").await.unwrap();
    let start = Instant::now();
    while lock(&b, &b_closed, 9, 200).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "deferred release not sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An unlock lets the other client in.
    let un = Flock {
        kind: LockType::Unlock,
        ..wlock(7, 100)
    };
    a.lk(&ctx(100), &lockf, LkCmd::Set, &un, Xdata::new())
        .await
        .unwrap();
    lock(&b, &b_lockf, 9, 200).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_locks_are_released_and_a_lost_lock_fails_its_owners_fds() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let (server, port) = brick(dir.path(), "1").await;
    let proxy = Proxy::new(port).await;
    let (ga, gb) = (client(proxy.port).await, client(port).await);
    let (a, b) = (ga.top().clone(), gb.top().clone());

    let lockf = create(&a, 100, "lockf", b"L").await;
    lock(&a, &lockf, 7, 100).await.unwrap();
    // The same process's other fd on the locked file, another process's fd on it, and the
    // same process's fd on another file.
    let same_proc = open(&a, 100, "lockf").await;
    let other_proc = open(&a, 300, "lockf").await;
    let other_file = create(&a, 100, "other", b"O").await;
    // A lock nobody takes meanwhile is taken again.
    let kept = create(&a, 100, "kept", b"K").await;
    lock(&a, &kept, 7, 100).await.unwrap();
    let data = create(&a, 100, "data", b"precious data").await;
    a.unlink(&ctx(100), &Loc::entry(Gfid::ROOT, "data"), Xdata::new())
        .await
        .unwrap();
    let b_lockf = open(&b, 200, "lockf").await;
    let b_kept = open(&b, 200, "kept").await;

    // A waiter elsewhere is granted once the grace ends, not before.
    let cut = Instant::now();
    proxy.close();
    let waiter = {
        let (b, fd) = (b.clone(), b_lockf.clone());
        tokio::spawn(async move {
            b.lk(&ctx(200), &fd, LkCmd::SetWait, &wlock(9, 200), Xdata::new())
                .await
                .map(|_| cut.elapsed())
        })
    };
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was never granted")
        .unwrap()
        .unwrap();
    assert!(
        waited >= Duration::from_millis(900),
        "granted after {waited:?}"
    );
    while status_has_parked(&server) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.reopen();
    wait_up(&a).await;
    assert!(
        a.dump().contains("last_connect=new session"),
        "{}",
        a.dump()
    );

    // The lock B holds now is lost for A: every fd of that owner on that file fails.
    assert_eq!(write(&a, &lockf, b"x").await, Err(Errno::EIO));
    assert_eq!(read(&a, &same_proc).await, Err(Errno::EIO));
    assert_eq!(
        a.fstat(&ctx(100), &lockf, Xdata::new()).await.err(),
        Some(Errno::EIO)
    );
    assert_eq!(lock(&a, &lockf, 7, 100).await, Err(Errno::EIO));
    // Others are unaffected.
    assert_eq!(read(&a, &other_proc).await.unwrap(), b"L");
    write(&a, &other_file, b"o").await.unwrap();
    // The lock nobody took was taken again.
    assert_eq!(lock(&b, &b_kept, 9, 200).await, Err(Errno::EAGAIN));
    write(&a, &kept, b"k").await.unwrap();
    // The unlinked file is gone with the brick's fd.
    assert_eq!(read(&a, &data).await, Err(Errno::EBADF));
    assert!(a.dump().contains("lost_fds=2"), "{}", a.dump());
    // Releasing lost fds is fine.
    a.release(&ctx(100), &lockf, Xdata::new()).await.unwrap();
    a.release(&ctx(100), &same_proc, Xdata::new())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_zero_releases_at_once() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let (server, port) = brick(dir.path(), "0").await;
    let proxy = Proxy::new(port).await;
    let (ga, gb) = (client(proxy.port).await, client(port).await);
    let (a, b) = (ga.top().clone(), gb.top().clone());
    let lockf = create(&a, 100, "lockf", b"L").await;
    lock(&a, &lockf, 7, 100).await.unwrap();
    let b_lockf = open(&b, 200, "lockf").await;
    proxy.close();
    let start = Instant::now();
    while lock(&b, &b_lockf, 9, 200).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(3), "not released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!status_has_parked(&server));
    proxy.reopen();
    wait_up(&a).await;
    assert_eq!(write(&a, &lockf, b"x").await, Err(Errno::EIO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_brick_gets_the_locks_again_or_fails_the_owners_fds() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let (s1, p1) = brick(dir.path(), "10").await;
    let proxy = Proxy::new(p1).await;
    let ga = client(proxy.port).await;
    let a = ga.top().clone();
    let f = create(&a, 100, "f", b"F").await;
    let g = create(&a, 100, "g", b"G").await;
    lock(&a, &f, 7, 100).await.unwrap();
    lock(&a, &g, 7, 100).await.unwrap();
    // A flock lock (owned by its open file description, here the fd).
    let h = create(&a, 100, "h", b"H").await;
    let mut fl = Xdata::new();
    fl.set(weft_core::LK_FLOCK_KEY, Vec::new());
    a.lk(&ctx(100), &h, LkCmd::Set, &wlock(h.id, 100), fl.clone())
        .await
        .unwrap();

    // "Restart": the old server goes (state lost), a new one serves the same directory.
    proxy.close();
    s1.shutdown().await;
    let (_s2, p2) = brick(dir.path(), "10").await;
    let gb = client(p2).await;
    let b = gb.top().clone();
    // Another client takes a conflicting lock on g before A is back.
    let b_g = open(&b, 200, "g").await;
    lock(&b, &b_g, 9, 200).await.unwrap();
    proxy.retarget(p2);
    proxy.reopen();
    wait_up(&a).await;
    assert!(
        a.dump().contains("last_connect=new session"),
        "{}",
        a.dump()
    );

    // f's lock was taken again: B cannot have it, A's fd works.
    let b_f = open(&b, 200, "f").await;
    assert_eq!(lock(&b, &b_f, 9, 200).await, Err(Errno::EAGAIN));
    write(&a, &f, b"f").await.unwrap();
    assert_eq!(read(&a, &f).await.unwrap(), b"f");
    // So was the flock lock.
    let b_h = open(&b, 200, "h").await;
    assert_eq!(
        b.lk(&ctx(200), &b_h, LkCmd::Set, &wlock(b_h.id, 200), fl)
            .await
            .err(),
        Some(Errno::EAGAIN)
    );
    // g's was lost to B.
    assert_eq!(write(&a, &g, b"g").await, Err(Errno::EIO));
    assert!(a.dump().contains("locks_held=2"), "{}", a.dump());
}

/// A raw client: handshake with `name` and `id`; returns the stream and whether resumed.
async fn raw_connect(port: u16, name: &str, id: SessionId) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let hs = Handshake {
        brick: "b".into(),
        client_name: name.into(),
    };
    let meta = resume::with_session_id(&msg::encode(&hs), id);
    s.write_all(&Frame::new(Kind::Handshake, 1, meta, Bytes::new()).encode())
        .await
        .unwrap();
    let f = raw_next(&mut s).await;
    assert_eq!(f.header.kind, Kind::HandshakeReply);
    (s, resume::resumed(&f.meta))
}

async fn raw_next(s: &mut TcpStream) -> Frame {
    let mut buf = BytesMut::new();
    loop {
        if let Some(f) = Frame::decode(&mut buf).unwrap() {
            return f;
        }
        assert!(s.read_buf(&mut buf).await.unwrap() > 0, "closed");
    }
}

async fn raw_call(s: &mut TcpStream, fop: FopRequest) -> Result<Reply, i32> {
    let req = Request {
        ctx: Ctx::internal(),
        xdata: Xdata::new(),
        fop,
    };
    s.write_all(&Frame::new(Kind::Request, 5, msg::encode(&req), Bytes::new()).encode())
        .await
        .unwrap();
    let f = raw_next(s).await;
    msg::decode::<Response>(Kind::Reply, &f.meta)
        .unwrap()
        .result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_with_the_same_name_inherits_nothing() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let (server, port) = brick(dir.path(), "10").await;
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let a = client(port).await;
    let (iatt, _) = a
        .top()
        .lookup(&Ctx::internal(), &Loc::entry(Gfid::ROOT, "f"), Xdata::new())
        .await
        .unwrap();
    let name = "host:1234:c";
    let (first, second) = (SessionId::random(), SessionId::random());
    let (mut s, resumed) = raw_connect(port, name, first).await;
    assert!(!resumed);
    let open = FopRequest::Open {
        loc: Loc::inode(iatt.gfid),
        gfid: iatt.gfid,
        flags: libc::O_RDWR,
    };
    let Ok(Reply::Opened { fd }) = raw_call(&mut s, open).await else {
        panic!("open failed");
    };
    drop(s);
    let start = Instant::now();
    while !status_has_parked(&server) {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Same name, another id: a new client.
    let (mut s, resumed) = raw_connect(port, name, second).await;
    assert!(!resumed);
    assert_eq!(
        raw_call(&mut s, FopRequest::Fstat { fd }).await.err(),
        Some(libc::EBADF)
    );
    drop(s);
    // The first id gets its fd back, even while its older connection is still up.
    let (mut s, resumed) = raw_connect(port, name, first).await;
    assert!(resumed);
    assert!(raw_call(&mut s, FopRequest::Fstat { fd }).await.is_ok());
    let (mut s2, resumed) = raw_connect(port, name, first).await;
    assert!(resumed);
    assert!(raw_call(&mut s2, FopRequest::Fstat { fd }).await.is_ok());
    // The older connection was closed by the takeover.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("older connection not closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}
