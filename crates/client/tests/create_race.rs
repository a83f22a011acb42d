//! Two clients of one brick server creating the same new name at once, without O_EXCL:
//! both get the one inode (the gfid the brick answered with, never their own proposal),
//! so an exclusive whole-file lock goes to only one of them.

mod common;

use common::Server;
use weft_core::{Errno, Flock, LkCmd, LockType};

fn whole(owner: u64, kind: LockType) -> Flock {
    Flock {
        kind,
        start: 0,
        len: 0,
        pid: 1,
        owner,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_share_the_inode_and_its_locks() {
    let server = Server::start().await;
    let (a, b) = (server.volume().await, server.volume().await);
    for i in 0..50 {
        let p = format!("/race-{i}");
        let (fa, fb) = tokio::join!(
            a.create(&p, libc::O_RDWR, 0o644),
            b.create(&p, libc::O_RDWR, 0o644)
        );
        let (fa, fb) = (fa.unwrap(), fb.unwrap());
        let gfid = a.stat(&p).await.unwrap().gfid;
        assert_eq!(fa.gfid(), gfid, "run {i}");
        assert_eq!(fb.gfid(), gfid, "run {i}");
        assert_eq!(fa.stat().await.unwrap().gfid, gfid, "run {i}");
        assert_eq!(fb.stat().await.unwrap().gfid, gfid, "run {i}");
        assert_eq!(
            fa.stat().await.unwrap().ino,
            fb.stat().await.unwrap().ino,
            "run {i}"
        );

        let (wa, wb) = (whole(1, LockType::Write), whole(2, LockType::Write));
        let (la, lb) = tokio::join!(fa.lock(LkCmd::Set, &wa), fb.lock(LkCmd::Set, &wb));
        let granted = [&la, &lb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(granted, 1, "run {i}: {la:?} {lb:?}");
        for r in [la, lb] {
            if let Err(e) = r {
                assert_eq!(e.errno, Errno::EAGAIN, "run {i}");
            }
        }
        // Both write through their own fd into the same file.
        fa.write_all(0, b"aa").await.unwrap();
        fb.write_all(2, b"bb").await.unwrap();
        fa.close().await.unwrap();
        fb.close().await.unwrap();
        assert_eq!(&a.read_file(&p).await.unwrap()[..], b"aabb", "run {i}");
    }

    // With O_EXCL exactly one wins; the other is EEXIST.
    for i in 0..20 {
        let p = format!("/excl-{i}");
        let (fa, fb) = tokio::join!(
            a.create(&p, libc::O_RDWR | libc::O_EXCL, 0o644),
            b.create(&p, libc::O_RDWR | libc::O_EXCL, 0o644)
        );
        let won: Vec<_> = [fa, fb]
            .into_iter()
            .filter_map(|r| match r {
                Ok(f) => Some(f),
                Err(e) => {
                    assert_eq!(e.errno, Errno::EEXIST, "run {i}");
                    None
                }
            })
            .collect();
        assert_eq!(won.len(), 1, "run {i}");
        for f in won {
            f.close().await.unwrap();
        }
    }

    // O_TRUNC on an existing file, through the other client: truncated, same inode.
    a.write_file("/t", b"0123456789").await.unwrap();
    let g = a.stat("/t").await.unwrap().gfid;
    let f = b
        .create("/t", libc::O_RDWR | libc::O_TRUNC, 0o644)
        .await
        .unwrap();
    assert_eq!(f.gfid(), g);
    assert_eq!(f.stat().await.unwrap().size, 0);
    f.close().await.unwrap();

    a.close().await;
    b.close().await;
    server.stop().await;
}
