//! The translator over a real `storage/posix` brick on a temporary directory.

use std::ffi::OsString;
use std::time::Duration;

use bytes::Bytes;
use weft_core::volfile::{Volfile, VolumeDecl};
use weft_core::*;

struct Brick {
    _dir: tempfile::TempDir,
    graph: Graph,
}

impl Brick {
    fn new() -> Brick {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let vf = Volfile {
            volumes: vec![
                VolumeDecl::new("b-posix", "storage/posix")
                    .option("directory", dir.path().display()),
                VolumeDecl::new("b-locks", "features/locks").subvolumes(&["b-posix"]),
            ],
        };
        let graph = Graph::build(&vf, &crate::registry()).unwrap();
        Brick { _dir: dir, graph }
    }

    fn top(&self) -> XlatorRef {
        self.graph.top().clone()
    }

    /// Creates `name` in the root and returns an open fd on it.
    async fn file(&self, name: &str) -> FdRef {
        let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
        self.top()
            .create(
                &Ctx::internal(),
                &Loc::entry(Gfid::ROOT, name),
                &fd,
                0o644,
                0,
                xd,
            )
            .await
            .unwrap();
        fd
    }

    /// Another fd on the same file.
    async fn reopen(&self, fd: &FdRef) -> FdRef {
        let fd2 = Fd::new(fd.gfid, libc::O_RDWR, false);
        self.top()
            .open(&Ctx::internal(), &Loc::inode(fd.gfid), &fd2, Xdata::new())
            .await
            .unwrap();
        fd2
    }
}

fn ctx(client: u64, lk_owner: u64) -> Ctx {
    Ctx {
        pid: 100 + client as u32,
        lk_owner,
        client,
        ..Ctx::default()
    }
}

fn fl(kind: LockType, start: u64, len: u64, owner: u64) -> Flock {
    Flock {
        kind,
        start,
        len,
        pid: 1000 + owner as u32,
        owner,
    }
}

async fn set(top: &XlatorRef, c: &Ctx, fd: &FdRef, l: Flock) -> Result<(), Errno> {
    top.lk(c, fd, LkCmd::Set, &l, Xdata::new())
        .await
        .map(|_| ())
}

async fn get(top: &XlatorRef, c: &Ctx, fd: &FdRef, l: Flock) -> Flock {
    top.lk(c, fd, LkCmd::Get, &l, Xdata::new()).await.unwrap().0
}

/// Spawns an F_SETLKW and checks it is still waiting a moment later.
async fn spawn_setlkw(
    top: &XlatorRef,
    c: Ctx,
    fd: &FdRef,
    l: Flock,
) -> tokio::task::JoinHandle<Result<(), Errno>> {
    let (top, fd) = (top.clone(), fd.clone());
    let h = tokio::spawn(async move {
        top.lk(&c, &fd, LkCmd::SetWait, &l, Xdata::new())
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!h.is_finished(), "F_SETLKW should be waiting");
    h
}

async fn finish<T>(h: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), h)
        .await
        .expect("waiter should have been answered")
        .unwrap()
}

#[tokio::test]
async fn registry_knows_the_type() {
    let r = crate::registry();
    let t = r.get("features/locks").unwrap();
    assert_eq!(t.children(), (1, 1));
    assert!(t.options().is_empty());
    let vf = Volfile {
        volumes: vec![VolumeDecl::new("l", "features/locks")],
    };
    assert!(Graph::check(&vf, &r).is_err());
}

#[tokio::test]
async fn other_fops_pass_through() {
    let b = Brick::new();
    let fd = b.file("f").await;
    let c = ctx(1, 1);
    b.top()
        .writev(&c, &fd, Bytes::from_static(b"hello"), 0, Xdata::new())
        .await
        .unwrap();
    let (data, _) = b.top().readv(&c, &fd, 10, 0, Xdata::new()).await.unwrap();
    assert_eq!(&data[..], b"hello");
}

/// The posix-suite fcntl scenario, as two clients see it through the translator.
#[tokio::test]
async fn fcntl_scenario() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let fd2 = b.reopen(&fd).await;
    let (me, other) = (ctx(1, 1), ctx(2, 2));
    set(&top, &me, &fd, fl(LockType::Write, 100, 100, 1))
        .await
        .unwrap();
    // Own locks are invisible to F_GETLK.
    let g = get(&top, &me, &fd, fl(LockType::Write, 150, 10, 1)).await;
    assert_eq!(g.kind, LockType::Unlock);
    assert_eq!((g.start, g.len), (150, 10));
    // Another owner sees the whole conflicting lock.
    let g = get(&top, &other, &fd2, fl(LockType::Write, 150, 10, 2)).await;
    assert_eq!(g, fl(LockType::Write, 100, 100, 1));
    assert_eq!(
        set(&top, &other, &fd2, fl(LockType::Write, 150, 10, 2)).await,
        Err(Errno::EAGAIN)
    );
    assert_eq!(
        set(&top, &other, &fd2, fl(LockType::Read, 199, 1, 2)).await,
        Err(Errno::EAGAIN)
    );
    let g = get(&top, &other, &fd2, fl(LockType::Write, 300, 10, 2)).await;
    assert_eq!(g.kind, LockType::Unlock);
    set(&top, &other, &fd2, fl(LockType::Write, 300, 10, 2))
        .await
        .unwrap();
    set(&top, &other, &fd2, fl(LockType::Write, 200, 10, 2))
        .await
        .unwrap();
    set(&top, &other, &fd2, fl(LockType::Unlock, 0, 0, 2))
        .await
        .unwrap();
    set(&top, &me, &fd, fl(LockType::Unlock, 100, 100, 1))
        .await
        .unwrap();
    set(&top, &other, &fd2, fl(LockType::Write, 150, 10, 2))
        .await
        .unwrap();
    set(&top, &other, &fd2, fl(LockType::Unlock, 150, 10, 2))
        .await
        .unwrap();

    // Shared whole-file lock, then an upgrade.
    set(&top, &me, &fd, fl(LockType::Read, 0, 0, 1))
        .await
        .unwrap();
    set(&top, &other, &fd2, fl(LockType::Read, 10, 10, 2))
        .await
        .unwrap();
    set(&top, &other, &fd2, fl(LockType::Unlock, 10, 10, 2))
        .await
        .unwrap();
    assert_eq!(
        set(&top, &other, &fd2, fl(LockType::Write, 10, 10, 2)).await,
        Err(Errno::EAGAIN)
    );
    let g = get(&top, &other, &fd2, fl(LockType::Write, 10, 10, 2)).await;
    assert_eq!(g, fl(LockType::Read, 0, 0, 1));
    set(&top, &me, &fd, fl(LockType::Write, 0, 0, 1))
        .await
        .unwrap();
    let g = get(&top, &other, &fd2, fl(LockType::Read, 5000, 1, 2)).await;
    assert_eq!(g, fl(LockType::Write, 0, 0, 1));

    // Unlocking the middle splits the lock.
    set(&top, &me, &fd, fl(LockType::Unlock, 40, 20, 1))
        .await
        .unwrap();
    let g = get(&top, &other, &fd2, fl(LockType::Write, 40, 20, 2)).await;
    assert_eq!(g.kind, LockType::Unlock);
    let g = get(&top, &other, &fd2, fl(LockType::Write, 0, 50, 2)).await;
    assert_eq!(g, fl(LockType::Write, 0, 40, 1));
    let g = get(&top, &other, &fd2, fl(LockType::Write, 55, 10, 2)).await;
    assert_eq!(g, fl(LockType::Write, 60, 0, 1));

    // Closing any fd of the file (a flush by the owner) drops all its locks there.
    let fd3 = b.reopen(&fd).await;
    top.flush(&me, &fd3, Xdata::new()).await.unwrap();
    top.release(&me, &fd3, Xdata::new()).await.unwrap();
    set(&top, &other, &fd2, fl(LockType::Write, 0, 0, 2))
        .await
        .unwrap();

    // Bad requests.
    assert_eq!(
        top.lk(
            &me,
            &fd,
            LkCmd::Get,
            &fl(LockType::Unlock, 0, 0, 1),
            Xdata::new()
        )
        .await
        .err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        set(&top, &me, &fd, fl(LockType::Write, u64::MAX, 2, 1)).await,
        Err(Errno(libc::EOVERFLOW))
    );
}

#[tokio::test]
async fn two_clients_with_the_same_lk_owner_conflict() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let (c1, c2) = (ctx(1, 7), ctx(2, 7));
    set(&top, &c1, &fd, fl(LockType::Write, 0, 100, 7))
        .await
        .unwrap();
    assert_eq!(
        set(&top, &c2, &fd, fl(LockType::Write, 50, 10, 7)).await,
        Err(Errno::EAGAIN)
    );
    let g = get(&top, &c2, &fd, fl(LockType::Read, 50, 10, 7)).await;
    assert_eq!(g, fl(LockType::Write, 0, 100, 7));
    // The same pair never conflicts with itself.
    set(&top, &c1, &fd, fl(LockType::Read, 50, 10, 7))
        .await
        .unwrap();
    // Locks are per inode.
    let other = b.file("g").await;
    set(&top, &c2, &other, fl(LockType::Write, 0, 0, 7))
        .await
        .unwrap();
}

#[tokio::test]
async fn setlkw_is_granted_after_unlock() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let (c1, c2) = (ctx(1, 1), ctx(2, 2));
    set(&top, &c1, &fd, fl(LockType::Write, 0, 10, 1))
        .await
        .unwrap();
    let h = spawn_setlkw(&top, c2.clone(), &fd, fl(LockType::Write, 5, 10, 2)).await;
    assert!(top.dump().contains("waiting"), "{}", top.dump());
    set(&top, &c1, &fd, fl(LockType::Unlock, 0, 10, 1))
        .await
        .unwrap();
    finish(h).await.unwrap();
    let g = get(&top, &c1, &fd, fl(LockType::Read, 0, 0, 1)).await;
    assert_eq!(g, fl(LockType::Write, 5, 10, 2));
    assert!(!top.dump().contains("waiting"));
}

#[tokio::test]
async fn waiters_are_granted_in_fifo_order() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    set(&top, &ctx(1, 1), &fd, fl(LockType::Write, 0, 0, 1))
        .await
        .unwrap();
    let h2 = spawn_setlkw(&top, ctx(2, 2), &fd, fl(LockType::Write, 0, 10, 2)).await;
    let h3 = spawn_setlkw(&top, ctx(3, 3), &fd, fl(LockType::Write, 5, 1, 3)).await;
    let h4 = spawn_setlkw(&top, ctx(4, 4), &fd, fl(LockType::Read, 20, 1, 4)).await;
    set(&top, &ctx(1, 1), &fd, fl(LockType::Unlock, 0, 0, 1))
        .await
        .unwrap();
    finish(h2).await.unwrap();
    finish(h4).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!h3.is_finished());
    set(&top, &ctx(2, 2), &fd, fl(LockType::Unlock, 0, 0, 2))
        .await
        .unwrap();
    finish(h3).await.unwrap();
}

#[tokio::test]
async fn a_dropped_waiter_is_never_granted() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let (c1, c2, c3) = (ctx(1, 1), ctx(2, 2), ctx(3, 3));
    set(&top, &c1, &fd, fl(LockType::Write, 0, 0, 1))
        .await
        .unwrap();
    // Aborted task (the server dropping a dead connection's work).
    let h = spawn_setlkw(&top, c2.clone(), &fd, fl(LockType::Write, 0, 0, 2)).await;
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    // A future dropped by a timeout.
    let r = tokio::time::timeout(
        Duration::from_millis(20),
        top.lk(
            &c2,
            &fd,
            LkCmd::SetWait,
            &fl(LockType::Read, 0, 0, 2),
            Xdata::new(),
        ),
    )
    .await;
    assert!(r.is_err());
    assert!(!top.dump().contains("waiting"), "{}", top.dump());
    set(&top, &c1, &fd, fl(LockType::Unlock, 0, 0, 1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Nothing is held by client 2.
    set(&top, &c3, &fd, fl(LockType::Write, 0, 0, 3))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_waiter_dropped_after_its_grant_but_before_seeing_it_leaves_no_lock() {
    // A current-thread runtime: the releaser grants the waiter, and the waiter's task is
    // aborted before it runs again, so it never sees the grant.
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let (c1, c2, c3) = (ctx(1, 1), ctx(2, 2), ctx(3, 3));
    // Client 2 holds a read lock it must keep after the undo.
    set(&top, &c2, &fd, fl(LockType::Read, 1000, 10, 2))
        .await
        .unwrap();
    set(&top, &c1, &fd, fl(LockType::Write, 0, 1000, 1))
        .await
        .unwrap();
    let h = spawn_setlkw(&top, c2.clone(), &fd, fl(LockType::Write, 0, 0, 2)).await;
    set(&top, &c1, &fd, fl(LockType::Unlock, 0, 0, 1))
        .await
        .unwrap();
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    assert_eq!(
        set(&top, &c3, &fd, fl(LockType::Write, 1005, 1, 3)).await,
        Err(Errno::EAGAIN)
    );
    set(&top, &c3, &fd, fl(LockType::Write, 0, 1000, 3))
        .await
        .unwrap();
    set(&top, &c3, &fd, fl(LockType::Write, 1010, 0, 3))
        .await
        .unwrap();
}

#[tokio::test]
async fn flush_releases_the_owners_locks() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let fd2 = b.reopen(&fd).await;
    let (c1a, c1b, c2) = (ctx(1, 7), ctx(1, 8), ctx(2, 9));
    set(&top, &c1a, &fd, fl(LockType::Write, 0, 10, 7))
        .await
        .unwrap();
    set(&top, &c1b, &fd, fl(LockType::Write, 20, 10, 8))
        .await
        .unwrap();
    let h = spawn_setlkw(&top, c2.clone(), &fd, fl(LockType::Write, 0, 10, 9)).await;
    // close(2) of another fd of the same file by owner 7.
    top.flush(&c1a, &fd2, Xdata::new()).await.unwrap();
    finish(h).await.unwrap();
    assert_eq!(
        set(&top, &c2, &fd, fl(LockType::Write, 20, 10, 9)).await,
        Err(Errno::EAGAIN)
    );
}

#[tokio::test]
async fn release_drops_the_fds_locks_and_waiters() {
    let b = Brick::new();
    let top = b.top();
    let fd1 = b.file("f").await;
    let fd2 = b.reopen(&fd1).await;
    let (c1, c2) = (ctx(1, 7), ctx(2, 9));
    set(&top, &c1, &fd1, fl(LockType::Write, 0, 10, 7))
        .await
        .unwrap();
    set(&top, &c1, &fd2, fl(LockType::Write, 20, 10, 7))
        .await
        .unwrap();
    set(&top, &c2, &fd2, fl(LockType::Write, 100, 10, 9))
        .await
        .unwrap();
    // A waiter of the same owner through fd1.
    let h = spawn_setlkw(&top, c1.clone(), &fd1, fl(LockType::Write, 100, 1, 7)).await;
    top.release(&c1, &fd1, Xdata::new()).await.unwrap();
    assert_eq!(finish(h).await, Err(Errno::EBADF));
    set(&top, &c2, &fd2, fl(LockType::Write, 0, 10, 9))
        .await
        .unwrap();
    assert_eq!(
        set(&top, &c2, &fd2, fl(LockType::Write, 20, 10, 9)).await,
        Err(Errno::EAGAIN)
    );
}

#[tokio::test]
async fn forget_client_drops_everything_it_held() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let (c1, c2) = (ctx(1, 7), ctx(2, 7));
    let whole = fl(LockType::Write, 0, 0, 7);
    let root = Loc::root();
    let name = OsString::from("n");
    set(&top, &c1, &fd, whole).await.unwrap();
    top.inodelk(
        &c1,
        "d",
        &Loc::inode(fd.gfid),
        LkCmd::Set,
        &whole,
        Xdata::new(),
    )
    .await
    .unwrap();
    top.entrylk(
        &c1,
        "d",
        &root,
        Some(&name),
        EntrylkCmd::LockNonBlocking,
        EntrylkType::Write,
        Xdata::new(),
    )
    .await
    .unwrap();
    // Client 1 also waits (on client 2's lock of another file).
    let fd2 = b.file("g").await;
    set(&top, &c2, &fd2, whole).await.unwrap();
    let h1 = spawn_setlkw(&top, c1.clone(), &fd2, whole).await;
    let h2 = spawn_setlkw(&top, c2.clone(), &fd, whole).await;

    top.forget_client(1).await;
    assert_eq!(finish(h1).await, Err(Errno::ENOTCONN));
    finish(h2).await.unwrap();
    top.inodelk(
        &c2,
        "d",
        &Loc::inode(fd.gfid),
        LkCmd::Set,
        &whole,
        Xdata::new(),
    )
    .await
    .unwrap();
    top.entrylk(
        &c2,
        "d",
        &root,
        None,
        EntrylkCmd::LockNonBlocking,
        EntrylkType::Write,
        Xdata::new(),
    )
    .await
    .unwrap();
    assert!(!top.dump().contains("client 1 "), "{}", top.dump());
}

#[tokio::test]
async fn inodelk_domains_are_independent() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    let loc = Loc::inode(fd.gfid);
    let (c1, c2) = (ctx(1, 1), ctx(2, 1));
    let w = fl(LockType::Write, 0, 0, 0);
    let xd = Xdata::new;
    top.inodelk(&c1, "a", &loc, LkCmd::Set, &w, xd())
        .await
        .unwrap();
    assert_eq!(
        top.inodelk(&c2, "a", &loc, LkCmd::Set, &w, xd())
            .await
            .err(),
        Some(Errno::EAGAIN)
    );
    assert_eq!(
        top.finodelk(&c2, "a", &fd, LkCmd::Set, &w, xd())
            .await
            .err(),
        Some(Errno::EAGAIN)
    );
    assert_eq!(
        top.inodelk(&c2, "a", &loc, LkCmd::Get, &w, xd())
            .await
            .err(),
        Some(Errno::EAGAIN)
    );
    top.inodelk(&c2, "b", &loc, LkCmd::Get, &w, xd())
        .await
        .unwrap();
    top.inodelk(&c2, "b", &loc, LkCmd::Set, &w, xd())
        .await
        .unwrap();
    // inodelk and lk do not see each other.
    set(&top, &c2, &fd, fl(LockType::Write, 0, 0, 1))
        .await
        .unwrap();
    // A blocking inodelk waits for the unlock.
    let (top2, loc2, c2b) = (top.clone(), loc.clone(), c2.clone());
    let h = tokio::spawn(async move {
        top2.inodelk(&c2b, "a", &loc2, LkCmd::SetWait, &w, Xdata::new())
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!h.is_finished());
    top.finodelk(
        &c1,
        "a",
        &fd,
        LkCmd::Set,
        &fl(LockType::Unlock, 0, 0, 0),
        xd(),
    )
    .await
    .unwrap();
    finish(h).await.unwrap();
    // inodelk needs a gfid.
    assert_eq!(
        top.inodelk(&c1, "a", &Loc::entry(Gfid::ROOT, "f"), LkCmd::Set, &w, xd())
            .await
            .err(),
        Some(Errno::EINVAL)
    );
    assert!(
        top.dump().contains("inodelk domain \"b\""),
        "{}",
        top.dump()
    );
}

#[tokio::test]
async fn entrylk_names_and_whole_directory() {
    let b = Brick::new();
    let top = b.top();
    let root = Loc::root();
    let (c1, c2) = (ctx(1, 1), ctx(2, 1));
    let (x, y) = (OsString::from("x"), OsString::from("y"));
    let nb = EntrylkCmd::LockNonBlocking;
    let (wr, rd) = (EntrylkType::Write, EntrylkType::Read);
    let xd = Xdata::new;
    top.entrylk(&c1, "d", &root, Some(&x), nb, wr, xd())
        .await
        .unwrap();
    top.entrylk(&c2, "d", &root, Some(&y), nb, wr, xd())
        .await
        .unwrap();
    assert_eq!(
        top.entrylk(&c2, "d", &root, Some(&x), nb, rd, xd())
            .await
            .err(),
        Some(Errno::EAGAIN)
    );
    assert_eq!(
        top.entrylk(&c2, "d", &root, None, nb, rd, xd()).await.err(),
        Some(Errno::EAGAIN)
    );
    // Another domain is independent.
    top.entrylk(&c2, "e", &root, None, nb, wr, xd())
        .await
        .unwrap();
    // A blocking whole-directory lock waits for client 1's name lock only (client 2's
    // own lock on "y" does not stand in its way).
    let (top2, root2, c2b) = (top.clone(), root.clone(), c2.clone());
    let h = tokio::spawn(async move {
        top2.entrylk(
            &c2b,
            "d",
            &root2,
            None,
            EntrylkCmd::Lock,
            EntrylkType::Write,
            Xdata::new(),
        )
        .await
        .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!h.is_finished());
    assert!(top.dump().contains("<whole directory>"), "{}", top.dump());
    top.entrylk(&c1, "d", &root, Some(&x), EntrylkCmd::Unlock, wr, xd())
        .await
        .unwrap();
    finish(h).await.unwrap();
    // The whole directory is now client 2's: every name conflicts.
    assert_eq!(
        top.entrylk(&c1, "d", &root, Some(&OsString::from("z")), nb, rd, xd())
            .await
            .err(),
        Some(Errno::EAGAIN)
    );
    // Unlocking what one does not hold is accepted.
    top.entrylk(&c1, "d", &root, Some(&x), EntrylkCmd::Unlock, wr, xd())
        .await
        .unwrap();
    // entrylk needs the directory's gfid.
    assert_eq!(
        top.entrylk(&c1, "d", &Loc::entry(Gfid::ROOT, "x"), None, nb, wr, xd())
            .await
            .err(),
        Some(Errno::EINVAL)
    );
}

#[tokio::test]
async fn fini_fails_waiters() {
    let b = Brick::new();
    let top = b.top();
    let fd = b.file("f").await;
    set(&top, &ctx(1, 1), &fd, fl(LockType::Write, 0, 0, 1))
        .await
        .unwrap();
    let h = spawn_setlkw(&top, ctx(2, 2), &fd, fl(LockType::Write, 0, 0, 2)).await;
    b.graph.fini().await;
    assert_eq!(finish(h).await, Err(Errno::ENOTCONN));
}
