//! `BrickServer::reconfigure` in one process: a brick server (posix under locks under
//! protocol/server) and a protocol/client graph connected to it.
//!
//! - squash options change in place: the connection stays up, its open fd and its lock
//!   keep working, and requests from then on run squashed;
//! - an auth.reject naming the client disconnects it and it is refused from then on;
//! - refusals (a brick not served, another shape, bad options) change nothing;
//! - a translator that cannot change an option live is reported.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use weft_core::{
    Ctx, Event, Fd, FdRef, Flock, Gfid, Graph, LkCmd, Loc, LockType, Xdata, XlatorRef, GFID_REQ_KEY,
};
use weft_protocol::BrickServer;

fn registry() -> weft_core::Registry {
    let mut r = weft_xlators::registry();
    weft_protocol::register(&mut r);
    r
}

/// The server volfile of brick `b` on `dir`, with extra protocol/server option lines.
fn brick_vf(dir: &std::path::Path, server_opts: &str) -> String {
    format!(
        "volume b-posix\n type storage/posix\n option directory {}\nend-volume\n\
         volume b\n type features/locks\n subvolumes b-posix\nend-volume\n\
         volume b-server\n type protocol/server\n{server_opts} subvolumes b\nend-volume\n",
        dir.display()
    )
}

async fn server(dir: &std::path::Path) -> (Arc<BrickServer>, u16) {
    let server = BrickServer::new(registry(), None, Default::default());
    server.attach(&brick_vf(dir, "")).await.expect("attach");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(server.clone().serve(listener));
    (server, port)
}

async fn client(port: u16) -> (Graph, weft_core::EventReceiver) {
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
            if let (_, Event::ChildUp(_)) = events.recv().await.expect("event") {
                break;
            }
        }
    })
    .await
    .expect("client up");
    (graph, events)
}

fn root() -> Ctx {
    Ctx {
        pid: 7,
        ..Ctx::internal()
    }
}

async fn create(top: &XlatorRef, name: &str) -> FdRef {
    let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
    top.create(&root(), &Loc::entry(Gfid::ROOT, name), &fd, 0o644, 0, xd)
        .await
        .expect("create");
    fd
}

async fn write(top: &XlatorRef, fd: &FdRef, data: &[u8]) -> Result<(), weft_core::Errno> {
    top.writev(&root(), fd, Bytes::copy_from_slice(data), 0, Xdata::new())
        .await
        .map(|_| ())
}

fn wlock(owner: u64) -> Flock {
    Flock {
        kind: LockType::Write,
        start: 0,
        len: 0,
        pid: 7,
        owner,
    }
}

fn owner_uid(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("stat").uid()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squash_changes_in_place_and_auth_disconnects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (srv, port) = server(dir.path()).await;
    let (graph, mut events) = client(port).await;
    let top = graph.top().clone();
    let fd = create(&top, "held").await;
    top.lk(&root(), &fd, LkCmd::Set, &wlock(1), Xdata::new())
        .await
        .expect("lock");
    assert_eq!(owner_uid(&dir.path().join("held")), 0);

    let names = srv
        .reconfigure(&brick_vf(
            dir.path(),
            " option server.root-squash on\n option server.anonuid 4242\n",
        ))
        .await
        .expect("reconfigure");
    assert_eq!(names, vec!["b".to_string()]);
    // Same connection: the fd and the lock are still the server's.
    write(&top, &fd, b"still here").await.expect("write");
    assert_eq!(srv.status(), "b clients=1\n");
    // The lock is still held: another client is refused it.
    let (other, _other_events) = client(port).await;
    let otop = other.top().clone();
    let (iatt, _) = otop
        .lookup(&root(), &Loc::entry(Gfid::ROOT, "held"), Xdata::new())
        .await
        .expect("lookup");
    let ofd = Fd::new(iatt.gfid, libc::O_RDWR, false);
    otop.open(&root(), &Loc::inode(iatt.gfid), &ofd, Xdata::new())
        .await
        .expect("open");
    let r = otop
        .lk(&root(), &ofd, LkCmd::Set, &wlock(2), Xdata::new())
        .await;
    assert_eq!(r.map(|_| ()), Err(weft_core::Errno(libc::EAGAIN)));
    otop.release(&root(), &ofd, Xdata::new())
        .await
        .expect("release");
    other.fini().await;
    create(&top, "squashed").await;
    assert_eq!(owner_uid(&dir.path().join("squashed")), 4242);

    // An auth.reject naming the client: disconnected, refused from then on, and nothing
    // kept for it.
    srv.reconfigure(&brick_vf(dir.path(), " option auth.reject 127.0.0.1\n"))
        .await
        .expect("reconfigure");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let (_, Event::ChildDown(_)) = events.recv().await.expect("event") {
                break;
            }
        }
    })
    .await
    .expect("client down");
    let t = Instant::now();
    while srv.status() != "b clients=0\n" {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", srv.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(write(&top, &fd, b"x").await.is_err());
    graph.fini().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reconfigures_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (srv, port) = server(dir.path()).await;
    let (graph, _events) = client(port).await;
    let top = graph.top().clone();
    let squash = " option server.root-squash on\n";

    // A brick not served, after one that is: nothing applied.
    let other = tempfile::tempdir().expect("tempdir");
    let two = format!(
        "{}{}",
        brick_vf(dir.path(), squash),
        brick_vf(other.path(), "")
            .replace("volume b", "volume o")
            .replace("subvolumes b", "subvolumes o")
    );
    let e = srv.reconfigure(&two).await.unwrap_err();
    assert!(
        e.contains("brick \"o\" is not served by this process"),
        "{e}"
    );
    // Another shape.
    let shaped = brick_vf(dir.path(), squash)
        .replace("subvolumes b-posix", "subvolumes b-trace")
        .replace(
            "volume b\n",
            "volume b-trace\n type debug/trace\n subvolumes b-posix\nend-volume\nvolume b\n",
        );
    let e = srv.reconfigure(&shaped).await.unwrap_err();
    assert!(e.contains("the graph changed shape"), "{e}");
    // Bad options; no protocol/server at all.
    let e = srv
        .reconfigure(&brick_vf(dir.path(), " option server.anongid -4\n"))
        .await
        .unwrap_err();
    assert!(e.contains("server.anongid"), "{e}");
    let e = srv
        .reconfigure(&brick_vf(
            dir.path(),
            " option transport.socket.ssl-enabled on\n",
        ))
        .await
        .unwrap_err();
    assert!(e.contains("without --tls-cert"), "{e}");
    let e = srv
        .reconfigure("volume p\n type storage/posix\n option directory /tmp\nend-volume\n")
        .await
        .unwrap_err();
    assert!(e.contains("no protocol/server"), "{e}");
    create(&top, "plain").await;
    assert_eq!(owner_uid(&dir.path().join("plain")), 0);

    // A translator that cannot change an option live: the others are applied, the
    // refusal is reported (a detach and an attach apply it).
    let moved = tempfile::tempdir().expect("tempdir");
    let vf = brick_vf(dir.path(), squash).replace(
        &format!("directory {}", dir.path().display()),
        &format!("directory {}", moved.path().display()),
    );
    let e = srv.reconfigure(&vf).await.unwrap_err();
    assert!(
        e.contains("reconfigured b") && e.contains("\"b-posix\"") && e.contains("directory"),
        "{e}"
    );
    create(&top, "squashed").await;
    assert_eq!(owner_uid(&dir.path().join("squashed")), 65534);
    assert_eq!(srv.status(), "b clients=1\n");
    graph.fini().await;
}
