//! Names are bytes, and paths resolve as POSIX says: on a local posix volume and over an
//! in-process brick server.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{join, local_volume, Server};
use weft_client::Volume;
use weft_core::{Errno, Flock, LkCmd, LockType};

/// A whole-file lock request of `kind` for `owner`.
fn whole(owner: u64, kind: LockType) -> Flock {
    Flock {
        kind,
        start: 0,
        len: 0,
        pid: 1,
        owner,
    }
}

/// The names the byte tests use: Latin-1, invalid UTF-8, every byte but `/` and NUL (254
/// bytes, one name), and a name of exactly 255 bytes.
fn odd_names() -> Vec<Vec<u8>> {
    let every: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
    let mut longest = every.clone();
    longest.push(b'x');
    assert_eq!(longest.len(), 255);
    vec![b"caf\xe9".to_vec(), b"\xff\xfe".to_vec(), every, longest]
}

fn sorted_names(d: Vec<weft_core::Dirent>) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = d.into_iter().map(|d| d.name).collect();
    v.sort();
    v
}

async fn errno<T>(r: impl std::future::Future<Output = weft_client::Result<T>>) -> Errno {
    match r.await {
        Ok(_) => panic!("succeeded where an error was due"),
        Err(e) => e.errno,
    }
}

async fn byte_names(vol: &Volume) {
    vol.mkdir("/n", 0o755).await.unwrap();
    let names = odd_names();
    for n in &names {
        let p = join("/n", n);
        // Created, written, locked: a second owner is refused, then granted after unlock.
        let f = vol
            .create(&p, libc::O_RDWR | libc::O_EXCL, 0o644)
            .await
            .unwrap();
        f.write_all(0, n).await.unwrap();
        f.lock(LkCmd::Set, &whole(1, LockType::Write))
            .await
            .unwrap();
        let g = vol.open(&p, libc::O_RDWR).await.unwrap();
        assert_eq!(g.gfid(), f.gfid());
        let e = g.lock(LkCmd::Set, &whole(2, LockType::Write)).await;
        assert_eq!(e.unwrap_err().errno, Errno::EAGAIN);
        f.lock(LkCmd::Set, &whole(1, LockType::Unlock))
            .await
            .unwrap();
        g.lock(LkCmd::Set, &whole(2, LockType::Write))
            .await
            .unwrap();
        g.close().await.unwrap();
        f.close().await.unwrap();
        assert_eq!(&vol.read_file(&p).await.unwrap()[..], &n[..]);
        vol.setxattr(&p, "user.k", n, 0).await.unwrap();
        assert_eq!(vol.getxattr(&p, "user.k").await.unwrap(), *n);
    }
    // Listed with the exact bytes.
    let mut want = names.clone();
    want.sort();
    assert_eq!(sorted_names(vol.readdir("/n").await.unwrap()), want);

    // A directory, a symlink (target bytes kept) and a hard link with odd names.
    let d = join("/n", b"dir\xe9\x80");
    vol.mkdir(&d, 0o755).await.unwrap();
    let target = OsStr::from_bytes(b"../caf\xe9");
    vol.symlink(target, d.join(OsStr::from_bytes(b"s\xff")))
        .await
        .unwrap();
    assert_eq!(
        vol.readlink(d.join(OsStr::from_bytes(b"s\xff")))
            .await
            .unwrap()
            .as_os_str(),
        target
    );
    vol.link(join("/n", b"caf\xe9"), d.join(OsStr::from_bytes(b"l\xfe")))
        .await
        .unwrap();
    assert_eq!(vol.stat(join("/n", b"caf\xe9")).await.unwrap().nlink, 2);
    assert_eq!(
        sorted_names(vol.readdir(&d).await.unwrap()),
        [b"l\xfe".to_vec(), b"s\xff".to_vec()]
    );
    // `..` from an odd directory name.
    let up = d.join("..").join(OsStr::from_bytes(b"\xff\xfe"));
    assert_eq!(&vol.read_file(&up).await.unwrap()[..], b"\xff\xfe");

    // Renamed (to other odd names), and read back under the new name.
    for n in &names {
        let mut m = n.clone();
        m[0] = 0x80;
        vol.rename(join("/n", n), join("/n", &m)).await.unwrap();
        assert_eq!(&vol.read_file(join("/n", &m)).await.unwrap()[..], &n[..]);
        assert_eq!(errno(vol.stat(join("/n", n))).await, Errno::ENOENT);
    }
    let mut want: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let mut m = n.clone();
            m[0] = 0x80;
            m
        })
        .chain([b"dir\xe9\x80".to_vec()])
        .collect();
    want.sort();
    assert_eq!(sorted_names(vol.readdir("/n").await.unwrap()), want);

    // Too long, and messages show the bytes lossily.
    let mut long = names[3].clone();
    long.push(b'y');
    assert_eq!(
        errno(vol.create(join("/n", &long), libc::O_RDWR, 0o644)).await,
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        errno(vol.mkdir(join("/n", &long), 0o755)).await,
        Errno::ENAMETOOLONG
    );
    let e = vol.stat(join("/n", b"gone\xe9")).await.unwrap_err();
    assert!(
        e.to_string().starts_with("lookup /n/gone\u{fffd}: ENOENT"),
        "{e}"
    );

    // Removed.
    for n in &want {
        let p = join("/n", n);
        if vol.stat(&p).await.unwrap().is_dir() {
            vol.unlink(p.join(OsStr::from_bytes(b"s\xff")))
                .await
                .unwrap();
            vol.unlink(p.join(OsStr::from_bytes(b"l\xfe")))
                .await
                .unwrap();
            vol.rmdir(&p).await.unwrap();
        } else {
            vol.unlink(&p).await.unwrap();
        }
    }
    assert!(vol.readdir("/n").await.unwrap().is_empty());
    vol.rmdir("/n").await.unwrap();
}

async fn path_rules(vol: &Volume) {
    vol.mkdir("/p", 0o755).await.unwrap();
    vol.write_file("/p/f", b"file").await.unwrap();
    vol.mkdir("/p/d", 0o755).await.unwrap();
    let root = vol.stat("/").await.unwrap();
    let d = vol.stat("/p/d").await.unwrap();

    // A trailing slash (or a final `.` or `..`) on a file: ENOTDIR, and nothing happens.
    assert_eq!(
        errno(vol.open("/p/f/", libc::O_RDONLY)).await,
        Errno::ENOTDIR
    );
    assert_eq!(errno(vol.unlink("/p/f/")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.stat("/p/f/")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.stat("/p/f/.")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.stat("/p/f/..")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.stat("/p/f/../f")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.readlink("/p/f/")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.rename("/p/f/", "/p/g")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.rename("/p/f", "/p/g/")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.link("/p/f/", "/p/g")).await, Errno::ENOTDIR);
    assert_eq!(errno(vol.link("/p/f", "/p/g/")).await, Errno::ENOENT);
    assert_eq!(errno(vol.symlink("f", "/p/g/")).await, Errno::ENOENT);
    assert_eq!(errno(vol.symlink("f", "/p/f/")).await, Errno::EEXIST);
    assert_eq!(errno(vol.getxattr("/p/f/", "user.x")).await, Errno::ENOTDIR);
    assert_eq!(&vol.read_file("/p/f").await.unwrap()[..], b"file");
    assert_eq!(errno(vol.stat("/p/g")).await, Errno::ENOENT);

    // ... and on a directory it is fine.
    assert_eq!(vol.stat("/p/d/").await.unwrap().gfid, d.gfid);
    assert_eq!(vol.stat("/p/d/.").await.unwrap().gfid, d.gfid);
    assert!(vol.readdir("/p/d/").await.unwrap().is_empty());
    assert_eq!(
        errno(vol.open("/p/d/", libc::O_RDONLY)).await,
        Errno::EISDIR
    );
    vol.mkdir("/p/e/", 0o755).await.unwrap();
    assert!(vol.stat("/p/e").await.unwrap().is_dir());
    vol.rename("/p/e/", "/p/e2/").await.unwrap();
    vol.rmdir("/p/e2/").await.unwrap();

    // create with a trailing slash is EISDIR (open(2) with O_CREAT), whether or not the
    // name exists, and makes nothing.
    assert_eq!(
        errno(vol.create("/p/new/", libc::O_RDWR, 0o644)).await,
        Errno::EISDIR
    );
    assert_eq!(errno(vol.stat("/p/new")).await, Errno::ENOENT);
    assert_eq!(
        errno(vol.create("/p/f/", libc::O_RDWR, 0o644)).await,
        Errno::EISDIR
    );
    assert_eq!(
        errno(vol.create("/p/d/.", libc::O_RDWR, 0o644)).await,
        Errno::EISDIR
    );
    assert_eq!(
        errno(vol.create("/p/d", libc::O_RDWR, 0o644)).await,
        Errno::EISDIR
    );

    // `.` and empty components are skipped.
    assert_eq!(vol.stat("//p/./d//.").await.unwrap().gfid, d.gfid);
    vol.write_file("/./p//d/./x", b"x").await.unwrap();
    assert_eq!(&vol.read_file("/p/d/x").await.unwrap()[..], b"x");

    // `..` goes to the parent; `..` of the root is the root; it needs an existing
    // directory to leave.
    assert_eq!(&vol.read_file("/p/d/../f").await.unwrap()[..], b"file");
    assert_eq!(
        errno(vol.read_file("/p/d/x/../../d/x")).await,
        Errno::ENOTDIR
    );
    assert_eq!(&vol.read_file("/p/d/../d/./x").await.unwrap()[..], b"x");
    assert_eq!(vol.stat("/..").await.unwrap().gfid, root.gfid);
    assert_eq!(vol.stat("/../../p/d").await.unwrap().gfid, d.gfid);
    assert_eq!(
        vol.stat("/p/d/..").await.unwrap().gfid,
        vol.stat("/p").await.unwrap().gfid
    );
    assert_eq!(errno(vol.stat("/p/nope/../f")).await, Errno::ENOENT);
    vol.mkdir("/p/d/../e", 0o755).await.unwrap();
    assert!(vol.stat("/p/e").await.unwrap().is_dir());
    vol.rename("/p/d/x", "/p/d/../e/y").await.unwrap();
    assert_eq!(&vol.read_file("/p/e/y").await.unwrap()[..], b"x");
    vol.unlink("/p/e/../e/y").await.unwrap();
    vol.rmdir("/p/d/../e").await.unwrap();

    // Final components that are not names, as Linux answers.
    assert_eq!(errno(vol.mkdir("/", 0o755)).await, Errno::EEXIST);
    assert_eq!(errno(vol.mkdir("/p/d/.", 0o755)).await, Errno::EEXIST);
    assert_eq!(errno(vol.mkdir("/p/d/..", 0o755)).await, Errno::EEXIST);
    assert_eq!(errno(vol.mkdir("/p/nope/.", 0o755)).await, Errno::ENOENT);
    assert_eq!(errno(vol.rmdir("/")).await, Errno(libc::EBUSY));
    assert_eq!(errno(vol.rmdir("/p/d/.")).await, Errno::EINVAL);
    assert_eq!(errno(vol.rmdir("/p/d/..")).await, Errno::ENOTEMPTY);
    assert_eq!(errno(vol.unlink("/")).await, Errno::EISDIR);
    assert_eq!(errno(vol.unlink("/p/d/..")).await, Errno::EISDIR);
    assert_eq!(
        errno(vol.rename("/p/d/.", "/p/z")).await,
        Errno(libc::EBUSY)
    );
    assert_eq!(errno(vol.rename("/p/d", "/")).await, Errno(libc::EBUSY));
    assert!(vol.stat("/p/d").await.unwrap().is_dir());

    // Relative paths and NUL bytes are EINVAL.
    assert_eq!(errno(vol.stat("p/d")).await, Errno::EINVAL);
    assert_eq!(errno(vol.stat("")).await, Errno::EINVAL);
    assert_eq!(errno(vol.stat("./p")).await, Errno::EINVAL);
    assert_eq!(errno(vol.mkdir("p/q", 0o755)).await, Errno::EINVAL);
    assert_eq!(errno(vol.unlink("p/f")).await, Errno::EINVAL);
    assert_eq!(
        errno(vol.create("x", libc::O_RDWR, 0o644)).await,
        Errno::EINVAL
    );
    assert_eq!(errno(vol.stat("/p\0/d")).await, Errno::EINVAL);
    assert_eq!(errno(vol.symlink("a\0b", "/p/s")).await, Errno::EINVAL);
    assert_eq!(errno(vol.symlink("", "/p/s")).await, Errno::ENOENT);

    // Names of 255 bytes work, 256 do not.
    let name = [b'n'; 255];
    vol.mkdir(join("/p", &name), 0o755).await.unwrap();
    assert!(vol.stat(join("/p", &name).join("..")).await.is_ok());
    vol.rmdir(join("/p", &name)).await.unwrap();
    assert_eq!(
        errno(vol.stat(join("/p", &[b'n'; 256]))).await,
        Errno::ENAMETOOLONG
    );

    // Every kind of argument a caller may hold.
    let p: &Path = Path::new("/p/f");
    assert!(vol.stat(p).await.is_ok());
    assert!(vol.stat(p.to_path_buf()).await.is_ok());
    assert!(vol.stat(OsStr::new("/p/f")).await.is_ok());
    assert!(vol.stat(String::from("/p/f")).await.is_ok());

    vol.unlink("/p/f").await.unwrap();
    vol.rmdir("/p/d").await.unwrap();
    vol.rmdir("/p").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_names_on_a_local_volume() {
    let (vol, _dir) = local_volume().await;
    byte_names(&vol).await;
    vol.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_names_over_a_brick_server() {
    let server = Server::start().await;
    let vol = server.volume().await;
    byte_names(&vol).await;
    // The connection never dropped: the volume stayed up throughout.
    assert!(vol.is_up());
    vol.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rules_on_a_local_volume() {
    let (vol, _dir) = local_volume().await;
    path_rules(&vol).await;
    vol.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rules_over_a_brick_server() {
    let server = Server::start().await;
    let vol = server.volume().await;
    path_rules(&vol).await;
    vol.close().await;
    server.stop().await;
}
