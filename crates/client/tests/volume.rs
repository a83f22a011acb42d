//! The path API of weft-client on a local posix volume and on the same kind of brick
//! served by an in-process brick server over loopback TCP.

mod common;

use common::{local_volume, registry, Server};
use weft_client::{OpenError, OpenOptions, Volume};
use weft_core::{Errno, Flock, LkCmd, LockType, SetAttr};

async fn exercise(vol: &Volume) {
    vol.mkdir("/docs", 0o755).await.unwrap();
    vol.write_file("/docs/a.txt", b"hello, world")
        .await
        .unwrap();
    // An existing file is opened and truncated by the same create.
    vol.write_file("/docs/a.txt", b"hello").await.unwrap();
    assert_eq!(&vol.read_file("/docs/a.txt").await.unwrap()[..], b"hello");
    assert_eq!(vol.stat("/docs/a.txt").await.unwrap().size, 5);

    // Errors name the operation, the path and the errno.
    let e = vol.mkdir("/docs", 0o755).await.unwrap_err();
    assert_eq!(e.errno, Errno::EEXIST);
    assert!(e.to_string().starts_with("mkdir /docs"), "{e}");
    assert_eq!(vol.stat("/nope/x").await.unwrap_err().errno, Errno::ENOENT);
    assert_eq!(vol.stat("relative").await.unwrap_err().errno, Errno::EINVAL);
    assert_eq!(
        vol.stat("/docs/a.txt/x").await.unwrap_err().errno,
        Errno::ENOTDIR
    );

    // Files: writes at offsets, reads, truncate, fstat.
    let f = vol
        .create("/docs/b.bin", libc::O_RDWR | libc::O_EXCL, 0o600)
        .await
        .unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    f.write_all(0, &big).await.unwrap();
    f.fsync().await.unwrap();
    assert_eq!(&f.read_to_end().await.unwrap()[..], &big[..]);
    assert_eq!(&f.read(10, 5).await.unwrap()[..], &big[10..15]);
    f.truncate(100).await.unwrap();
    assert_eq!(f.stat().await.unwrap().size, 100);
    // POSIX locks: a second owner conflicts.
    let lock = |owner, kind| Flock {
        kind,
        start: 0,
        len: 0,
        pid: 1,
        owner,
    };
    f.lock(LkCmd::Set, &lock(1, LockType::Write)).await.unwrap();
    assert_eq!(
        f.lock(LkCmd::Set, &lock(2, LockType::Write))
            .await
            .unwrap_err()
            .errno,
        Errno::EAGAIN
    );
    f.close().await.unwrap();
    assert!(vol
        .create("/docs/b.bin", libc::O_RDWR | libc::O_EXCL, 0o600)
        .await
        .is_err());

    // Names: rename, link, symlink, unlink, rmdir, readdir.
    vol.rename("/docs/b.bin", "/docs/c.bin").await.unwrap();
    vol.link("/docs/c.bin", "/docs/d.bin").await.unwrap();
    assert_eq!(vol.stat("/docs/d.bin").await.unwrap().nlink, 2);
    vol.symlink("a.txt", "/docs/s").await.unwrap();
    assert_eq!(
        vol.readlink("/docs/s").await.unwrap(),
        std::path::PathBuf::from("a.txt")
    );
    let mut names: Vec<String> = vol
        .readdir("/docs")
        .await
        .unwrap()
        .into_iter()
        .map(|d| String::from_utf8(d.name).unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "c.bin", "d.bin", "s"]);
    vol.unlink("/docs/d.bin").await.unwrap();
    assert_eq!(
        vol.rmdir("/docs").await.unwrap_err().errno,
        Errno::ENOTEMPTY
    );

    // Attributes and xattrs.
    let ia = vol
        .setattr(
            "/docs/a.txt",
            &SetAttr {
                mode: Some(0o640),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ia.mode & 0o7777, 0o640);
    vol.setxattr("/docs/a.txt", "user.k", b"v", 0)
        .await
        .unwrap();
    assert_eq!(vol.getxattr("/docs/a.txt", "user.k").await.unwrap(), b"v");
    assert!(vol
        .listxattr("/docs/a.txt")
        .await
        .unwrap()
        .contains(&"user.k".to_string()));
    vol.removexattr("/docs/a.txt", "user.k").await.unwrap();
    assert_eq!(
        vol.getxattr("/docs/a.txt", "user.k")
            .await
            .unwrap_err()
            .errno,
        Errno::ENODATA
    );
    assert!(vol.statfs("/").await.unwrap().blocks > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_api_on_a_local_volume() {
    let (vol, _dir) = local_volume().await;
    assert!(vol.is_up());
    exercise(&vol).await;
    vol.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_api_over_a_brick_server() {
    let server = Server::start().await;
    let vol = server.volume().await;
    exercise(&vol).await;
    vol.close().await;

    // A brick the server does not have: the open fails with the server's reason.
    let bad = server.client_volfile("w");
    match Volume::from_volfile(&bad, registry(), OpenOptions::default()).await {
        Err(OpenError::NotUp(why)) => assert!(why.contains("no brick named \"w\""), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a volume whose brick does not exist"),
    }
    server.stop().await;
}
